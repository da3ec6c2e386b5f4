"""Training: the DAPO math (`dapo`: advantages, zero-advantage filter, clipped token-level loss,
sampler gap) and chunked per-token log-probs through the LM head (`logprobs`)."""
