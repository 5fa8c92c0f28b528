"""FedQSN: masked, quantized model proxies (Xu et al., arXiv 2508.18911)."""
