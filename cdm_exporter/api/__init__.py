"""The CDM and IAM API client: HTTP transport, authentication, AK/SK signing, typed errors and models.

Nothing here imports Prometheus or the configuration: the client is usable on its own.
"""
