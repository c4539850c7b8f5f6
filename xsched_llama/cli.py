"""The `xsched-llama` command: thin click commands over the library modules.

Errors are one line on stderr (`error: …`) and a documented exit code (errors.py, docs/toolkit.md);
tracebacks only with --debug. Machine-readable summaries go to stdout with --json.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from . import __version__, pins
from .errors import UsageError, XschedLlamaError
from .paths import cache_dir


def _cache(ctx: click.Context) -> Path:
    return cache_dir(ctx.obj.get("cache_dir"))


def _emit(data: Any, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(data, indent=2, default=str))


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--cache-dir", type=click.Path(file_okay=False), envvar="XSCHED_LLAMA_CACHE",
              help="Cache directory [env XSCHED_LLAMA_CACHE; default $XDG_CACHE_HOME/xsched-llama].")
@click.option("--debug", is_flag=True, help="Show tracebacks.")
@click.version_option(__version__, prog_name="xsched-llama")
@click.pass_context
def cli(ctx: click.Context, cache_dir: str | None, debug: bool) -> None:
    """Fetch a pinned llama.cpp, apply the XSched patch series, build it, pull models and serve them."""
    ctx.ensure_object(dict)
    ctx.obj.update(cache_dir=cache_dir, debug=debug)


_SOURCE_HELP = "auto (git, then pypi), git, pypi, or a local directory/tarball [env XSCHED_LLAMA_SOURCE]."
_COMMIT_HELP = "Supported llama.cpp commit (a SHA prefix; default: the newest; list: pins.json)."
_commit_opt = click.option("--llama-commit", "llama_commit", metavar="SHA", help=_COMMIT_HELP)


@cli.command()
@click.option("--source", default=None, help=_SOURCE_HELP)
@_commit_opt
@click.option("--assume-commit", metavar="SHA", help="Trust that a plain local tree is this commit.")
@click.option("--force", is_flag=True, help="Fetch again even if cached.")
@click.option("--json", "as_json", is_flag=True, help="Print the manifest as JSON.")
@click.pass_context
def fetch(ctx: click.Context, source: str | None, llama_commit: str | None, assume_commit: str | None, force: bool,
          as_json: bool) -> None:
    """Get llama.cpp at a pinned commit into the cache (pruned, with a manifest)."""
    from . import fetch as fetch_mod
    r = fetch_mod.fetch(source, cache=_cache(ctx), commit=pins.resolve_commit(llama_commit),
                        assume_commit=assume_commit, force=force)
    click.echo(f"llama.cpp {r.manifest['commit'][:12]} ({r.manifest['source']}: {r.manifest['origin']})"
               f"{' (cached)' if r.reused else ''}: {r.tree}", err=True)
    _emit({"tree": str(r.tree), "reused": r.reused, "attempts": r.attempts, **r.manifest}, as_json)


def _build_options(vanilla: bool, cuda: bool, cuda_arch: str | None, targets: tuple[str, ...],
                   jobs: int | None, build_type: str, patches_dir: str | None, source: str | None,
                   cmake_define: tuple[str, ...], llama_commit: str | None) -> Any:
    from .build import BuildOptions
    return BuildOptions(cuda=cuda or bool(cuda_arch), cuda_arch=cuda_arch, vanilla=vanilla,
                        targets=list(targets) or ["llama-server"], jobs=jobs, build_type=build_type,
                        cmake_args=[f"-D{d}" for d in cmake_define],
                        patches_dir=Path(patches_dir) if patches_dir else None, source=source,
                        llama_commit=pins.resolve_commit(llama_commit))


_build_opts = [
    click.option("--vanilla", is_flag=True, help="Build the pinned commit unpatched (for comparisons)."),
    click.option("--cuda", is_flag=True, help="Build the CUDA backend."),
    click.option("--cuda-arch", metavar="ARCH", help="CMAKE_CUDA_ARCHITECTURES (default: from nvidia-smi); implies --cuda."),
    click.option("--target", "targets", multiple=True, metavar="T",
                 help="CMake target (repeatable; default llama-server), e.g. llama-bench, xsched-ctx-bench."),
    click.option("--jobs", "-j", type=click.IntRange(1), help="Parallel jobs [env XSCHED_LLAMA_JOBS; default: cores]."),
    click.option("--build-type", default="Release", type=click.Choice(["Release", "RelWithDebInfo", "Debug"])),
    click.option("--patches", "patches_dir", type=click.Path(file_okay=False),
                 help="Patch directory [env XSCHED_LLAMA_PATCHES; default: the package's patches/]."),
    click.option("--source", default=None, help=_SOURCE_HELP),
    _commit_opt,
    click.option("-D", "cmake_define", multiple=True, metavar="VAR=VALUE", help="Extra CMake definition."),
]


def _with(opts: list[Any]) -> Any:
    def deco(f: Any) -> Any:
        for o in reversed(opts):
            f = o(f)
        return f
    return deco


@cli.command()
@_with(_build_opts)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary on stdout.")
@click.pass_context
def build(ctx: click.Context, as_json: bool, **kw: Any) -> None:
    """Apply the patch series and build llama-server with CMake (cached, incremental)."""
    from . import build as build_mod
    summary = build_mod.build(_build_options(**kw), cache=_cache(ctx))
    _emit(summary, as_json)
    if not as_json:
        for t, p in summary["binaries"].items():
            click.echo(f"{t}: {p}")


@cli.group()
def model() -> None:
    """Pull, list or synthesize GGUF models."""


@model.command("pull")
@click.argument("spec", metavar="NAME|URL|OWNER/REPO[:QUANT]|hf://OWNER/REPO/FILE.gguf")
@click.option("--sha256", help="Expected SHA-256 of a preset or URL (verified; the file is deleted on mismatch).")
@click.option("--force", is_flag=True, help="Download again even if present.")
@click.pass_context
def model_pull(ctx: click.Context, spec: str, sha256: str | None, force: bool) -> None:
    """Download a preset (see `model list`), a URL, or a GGUF from the Hugging Face hub; print its path.

    OWNER/REPO[:QUANT] picks the repository's GGUF whose name carries QUANT (e.g. unsloth/Qwen3-0.6B-GGUF:Q8_0;
    without QUANT the one llama.cpp's -hf picks), hf://OWNER/REPO[@REV]/PATH/FILE.gguf names one file. Hub files
    go to the Hugging Face cache [env HF_HUB_CACHE, HF_HOME], with HF_TOKEN for gated repositories and
    HF_ENDPOINT for a mirror; every part of a split model is downloaded, the first part's path printed.
    """
    from . import models
    path = models.pull(spec, cache=_cache(ctx), sha256=sha256, force=force)
    click.echo(str(path))


@model.command("list")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def model_list(ctx: click.Context, as_json: bool) -> None:
    """List presets, cached models and the GGUFs in the Hugging Face cache."""
    from . import models
    rows = models.list_models(_cache(ctx))
    if as_json:
        _emit(rows, True)
        return
    for r in rows:
        mark = "*" if r["present"] else " "
        default = " (default)" if r["name"] == pins.default_model() else ""
        click.echo(f"{mark} {r['name']}{default}  {r['file']}  [{r['source']}]")


@model.command("synth")
@click.option("--shape", required=True,
              help="qwen3-0.6b (0.6 GiB), qwen3-1.7b (1.7 GiB), qwen3-4b (4.0 GiB), qwen3-8b (8.1 GiB) or tiny (26 MB).")
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Output file [default: <cache>/models/synth-SHAPE-q8_0.gguf].")
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--force", is_flag=True, help="Overwrite an existing file.")
@click.option("--source", default=None, help=_SOURCE_HELP)
@click.pass_context
def model_synth(ctx: click.Context, shape: str, output: str | None, seed: int, force: bool,
                source: str | None) -> None:
    """Write a random-weight GGUF with a real model's tensor shapes (GIBBERISH text; for benchmarks)."""
    from . import fetch as fetch_mod
    from . import synth
    synth.check_shape(shape)
    cache = _cache(ctx)
    tree = fetch_mod.fetch(source, cache=cache).tree
    out = Path(output) if output else synth.default_path(cache, shape)
    click.echo(str(synth.synth(shape, out, tree / "models" / "ggml-vocab-qwen2.gguf", seed=seed, force=force)))


@cli.group()
def patches() -> None:
    """Edit the patch series as a git branch (checkout), and write it back (export)."""


@patches.command("checkout")
@click.argument("directory", type=click.Path(file_okay=False))
@click.option("--patches", "patches_dir", type=click.Path(file_okay=False),
              help="Patch directory [env XSCHED_LLAMA_PATCHES; default: the checkout's or the package's patches/].")
@click.option("--source", default=None, help=_SOURCE_HELP)
@_commit_opt
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary on stdout.")
@click.pass_context
def patches_checkout(ctx: click.Context, directory: str, patches_dir: str | None, source: str | None,
                     llama_commit: str | None, as_json: bool) -> None:
    """Make DIRECTORY a git repository: the pinned tree, the overlay, one commit per patch (branch xsched-llama)."""
    from . import fetch as fetch_mod
    from . import patches as patches_mod
    from . import workspace
    commit = pins.resolve_commit(llama_commit)
    fetched = fetch_mod.fetch(source, cache=_cache(ctx), commit=commit)
    ps = patches_mod.load(Path(patches_dir) if patches_dir else None, commit)
    port_from = None
    if not pins.is_default(commit) and ps.series_dir is None:  # not ported yet: port the newest series
        port_from = fetch_mod.fetch(source, cache=_cache(ctx)).tree
        click.echo(f"llama.cpp {commit[:12]} has no series of its own yet: porting the newest one with git am -3",
                   err=True)
    summary = workspace.checkout(Path(directory), ps, fetched.tree, str(fetched.manifest["commit"]), port_from)
    _emit(summary, as_json)
    if not as_json:
        click.echo(f"{summary['checkout']}: branch {summary['branch']}, {len(ps.series)} patches on "
                   f"llama.cpp {str(summary['commit'])[:12]}; `xsched-llama patches export {directory}` writes it back")


@patches.command("export")
@click.argument("directory", type=click.Path(file_okay=False, exists=True))
@click.option("--patches", "patches_dir", type=click.Path(file_okay=False),
              help="Where to write [default: the patch directory the checkout was made from].")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary on stdout.")
def patches_export(directory: str, patches_dir: str | None, as_json: bool) -> None:
    """Write the branch of a checkout back as patches/ (series, patch files, overlay)."""
    from . import workspace
    repo = Path(directory)
    target = Path(patches_dir) if patches_dir else Path(str(workspace.read_meta(repo.resolve())["patches_dir"]))
    summary = workspace.export(repo, target)
    _emit(summary, as_json)
    if not as_json:
        click.echo(f"{summary['exported']}: {len(summary['patches'])} patches, "  # type: ignore[arg-type]
                   f"{summary['overlay_files']} overlay files")


@cli.command(context_settings={"ignore_unknown_options": False})
@click.option("-m", "--model", "model_spec",
              help="GGUF path, preset, URL, OWNER/REPO[:QUANT] or hf://OWNER/REPO/FILE.gguf [default: smollm2-135m].")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8080, show_default=True, type=click.IntRange(0, 65535))
@click.option("--instance", "instance", multiple=True, metavar="[NAME:]P:W:NP[:Q]",
              help="One server instance: name, priority, weight, slots, optional bound on waiting requests "
                   "(repeatable), e.g. high:10:1:2 or batch:0:1:4:16; the name shows in /xsched, /props, /slots "
                   "and the metrics.")
@click.option("--instances", metavar="[NAME=]P:W:NP[:Q],...", help="All instances in llama-server's own form.")
@click.option("--max-waiting", "max_waiting", type=int, metavar="N",
              help="Waiting requests of all instances together (passed as --xsched-max-waiting; >= 1); beyond it "
                   "the lowest priority gets 429.")
@click.option("--policy", type=click.Choice(["hpf", "wrr", "none"], case_sensitive=False),
              help="XSched policy (passed as --xsched-policy; the local one when joined to a global scheduler).")
@click.option("--xsched-scheduler", "xsched_scheduler", metavar="PATH",
              help="Join the global scheduler (`xsched-llama scheduler`) at this socket (llama-server --xsched-scheduler).")
@_with(_build_opts)
@click.argument("server_args", nargs=-1, type=click.UNPROCESSED, metavar="[-- LLAMA-SERVER ARGS]")
@click.pass_context
def serve(ctx: click.Context, model_spec: str | None, host: str, port: int, instance: tuple[str, ...],
          instances: str | None, max_waiting: int | None, policy: str | None, xsched_scheduler: str | None,
          server_args: tuple[str, ...], **kw: Any) -> None:
    """Serve a model with the patched llama-server (fetches and builds on first use). Ctrl-C stops it."""
    from . import build as build_mod
    from . import models, server, ui
    from . import scheduler as sched_mod
    cache = _cache(ctx)
    opts = _build_options(**kw)
    sched = server.scheduling_args(instance, instances, policy, max_waiting)
    if (sched or xsched_scheduler) and opts.vanilla:
        raise UsageError("--instance/--instances/--max-waiting/--policy/--xsched-scheduler need the patched server "
                         "(drop --vanilla)")
    if xsched_scheduler:
        sock = sched_mod.socket_path(xsched_scheduler)
        sched = [*sched, "--xsched-scheduler", str(sock)]
        ui.info(f"joining the global scheduler at {sock}; without it the server schedules locally")
    binary = build_mod.build(opts, cache=cache)["binaries"]["llama-server"]
    model_path = models.resolve(model_spec, cache=cache)
    if "synth-" in model_path.name:
        ui.warn(f"{model_path.name} is a SYNTHETIC model: its text is gibberish")
    log = cache / "logs" / "serve.log"
    srv = server.ServerProcess(binary, ["-m", str(model_path), *sched, *server_args], host=host, port=port,
                               log_path=log, stream=True, startup_timeout=600, die_with_parent=True)
    ui.info("+ " + " ".join(srv.command()))
    rc = server.run_foreground(srv, on_ready=lambda s: ui.info(f"serving {model_path.name} at {s.url} "
                                                                "(Ctrl-C stops)"))
    sys.exit(rc)


@cli.group(invoke_without_command=True)
@click.option("--socket", "sock", metavar="PATH",
              help="Socket to listen at [default: $XDG_RUNTIME_DIR/xsched-llama/xschedd.sock, else /tmp/xsched-llama-UID/].")
@click.option("--policy", default="hpf", show_default=True, type=click.Choice(["hpf", "wrr", "none"], case_sensitive=False))
@click.option("--timeslice-us", default=5000, show_default=True, type=click.IntRange(100, 10_000_000),
              help="WRR quantum.")
@click.option("--group", metavar="NAME", help="Also let members of this group join (socket mode 0660).")
@click.option("--max-processes", default=64, show_default=True, type=click.IntRange(1, 4096))
@click.option("--verbose", is_flag=True, help="Log every suspension and resumption.")
@click.option("--poll/--no-poll", default=True, show_default=True,
              help="While a queue is Ready, poll for edges instead of sleeping until a doorbell rings: decisions "
                   "without the daemon's wake-up, one CPU core busy while work runs.")
@click.pass_context
def scheduler(ctx: click.Context, sock: str | None, policy: str, timeslice_us: int, group: str | None,
              max_processes: int, verbose: bool, poll: bool) -> None:
    """Run the global scheduler (xschedd) in the foreground: one policy over every joined server's queues.

    Servers join with `xsched-llama serve --xsched-scheduler PATH` (XSCHED_SCHEDULER=PATH). Ctrl-C or SIGTERM stops
    it; the servers then schedule locally and join again when it is back. `status` asks a running one.
    """
    from . import scheduler as sched_mod
    ctx.obj["socket"] = sock
    if ctx.invoked_subcommand is not None:
        return
    sched_mod.run_foreground(sched_mod.socket_path(sock), policy=policy, timeslice_us=timeslice_us, group=group,
                             max_processes=max_processes, verbose=verbose, poll=poll)


@scheduler.command("status")
@click.option("--socket", "sock", metavar="PATH", help="The daemon's socket [default: as `scheduler`].")
@click.option("--json", "as_json", is_flag=True, help="Print the daemon's status as JSON.")
@click.pass_context
def scheduler_status(ctx: click.Context, sock: str | None, as_json: bool) -> None:
    """Print every joined process and queue: priority, state, suspended time."""
    from . import scheduler as sched_mod
    data = sched_mod.status(sched_mod.socket_path(sock or ctx.obj.get("socket")))
    if as_json:
        _emit(data, True)
    else:
        click.echo(sched_mod.format_status(data))


from .bench.cli import bench as _bench  # noqa: E402  (the bench package imports nothing from this module)

cli.add_command(_bench)


def main(argv: list[str] | None = None) -> None:
    """main() runs the CLI with one-line errors and documented exit codes."""
    debug = "--debug" in (argv if argv is not None else sys.argv[1:])
    try:
        cli.main(args=argv, prog_name="xsched-llama", standalone_mode=False)
    except XschedLlamaError as e:
        if debug:
            raise
        click.echo(f"error: {e}", err=True)
        sys.exit(e.exit_code)
    except click.exceptions.Abort:
        click.echo("error: interrupted", err=True)
        sys.exit(130)
    except click.ClickException as e:
        click.echo(f"error: {e.format_message()}", err=True)
        sys.exit(UsageError.exit_code)
    except KeyboardInterrupt:
        click.echo("error: interrupted", err=True)
        sys.exit(130)
