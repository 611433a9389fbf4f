"""cdm-exporter: a Prometheus exporter for Huawei Cloud CDM (Cloud Data Migration)."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("cdm-exporter")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"
