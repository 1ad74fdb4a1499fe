"""Optional middleware and framework glue, one module each."""
