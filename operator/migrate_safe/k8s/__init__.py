"""The operator layer: the only package that imports kopf, kubernetes or prometheus_client."""
