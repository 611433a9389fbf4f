"""Known state to Prometheus metric families: the custom collector behind ``/metrics``."""
