"""A shop whose handlers run on Cloud Run by push, and locally by pull."""
