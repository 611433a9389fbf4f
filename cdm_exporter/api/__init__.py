"""The CDM and IAM API client: HTTP transport, authentication, AK/SK signing, job-list paging, typed
errors and models, and the names of the endpoints and of the rate-limit policies they draw from.

Nothing here imports Prometheus or the configuration: the client is usable on its own.
"""
