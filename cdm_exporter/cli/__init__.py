"""The ``cdm-exporter`` command line: the only place that reads flags and the environment."""

from __future__ import annotations

from typing import IO, Any

import click

from cdm_exporter import __version__
from cdm_exporter.cli.check import check
from cdm_exporter.cli.demo import demo
from cdm_exporter.cli.serve import serve
from cdm_exporter.cli.simulate import simulate


class OneLineUsageError(click.UsageError):
    """A bad flag, shown like a bad configuration: one line naming it and what is wrong."""

    def show(self, file: IO[Any] | None = None) -> None:
        text = " ".join(self.format_message().split())
        where = f" (see '{self.ctx.command_path} --help')" if self.ctx is not None else ""
        click.echo(f"cdm-exporter: error: {text}{where}", file=file, err=True)


def _one_line(error: click.UsageError) -> click.UsageError:
    """``error`` shown on one line, unless it shows itself its own way (the help, for no arguments)."""
    if type(error).show is not click.UsageError.show:
        return error
    return OneLineUsageError(error.format_message(), error.ctx)


class CommandLine(click.Group):
    """The command group; a usage error anywhere below it is shown on one line (exit 2)."""

    def make_context(
        self, info_name: str | None, args: list[str], parent: click.Context | None = None, **extra: Any
    ) -> click.Context:
        try:
            return super().make_context(info_name, args, parent, **extra)
        except click.UsageError as error:
            raise _one_line(error) from None

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except click.UsageError as error:
            raise _one_line(error) from None


@click.group(
    cls=CommandLine, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100}
)
@click.version_option(__version__, prog_name="cdm-exporter")
def cli() -> None:
    """Prometheus exporter for Huawei Cloud CDM (Cloud Data Migration) jobs and clusters."""


cli.add_command(serve)
cli.add_command(check)
cli.add_command(demo)
cli.add_command(simulate)


def main() -> None:
    cli(prog_name="cdm-exporter")
