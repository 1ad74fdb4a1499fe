"""Orders: a model, a subscription that stores them and a task that counts them."""
