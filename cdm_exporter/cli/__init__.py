"""The ``cdm-exporter`` command line: the only place that reads flags and the environment."""

from __future__ import annotations

import click

from cdm_exporter import __version__
from cdm_exporter.cli.check import check
from cdm_exporter.cli.demo import demo
from cdm_exporter.cli.serve import serve
from cdm_exporter.cli.simulate import simulate


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="cdm-exporter")
def cli() -> None:
    """Prometheus exporter for Huawei Cloud CDM (Cloud Data Migration) jobs and clusters."""


cli.add_command(serve)
cli.add_command(check)
cli.add_command(demo)
cli.add_command(simulate)


def main() -> None:
    cli(prog_name="cdm-exporter")
