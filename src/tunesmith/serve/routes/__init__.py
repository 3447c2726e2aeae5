"""OpenAI-shaped endpoints, one module per resource."""
