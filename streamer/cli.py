"""Command line: ``emotion-stream run | serve | replay | report | config | schema | devices``."""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import logging
import sys
from collections.abc import Callable
from importlib import resources

import yaml

from streamer.core.config import AppConfig, load_config, redacted
from streamer.core.errors import StreamerError
from streamer.sources.local import BUILTIN_SAMPLE, make_source

DESCRIPTION = """\
Streaming speech emotion recognition. Audio in (file, microphone or raw PCM on
stdin) is cut into utterances by voice activity detection, transcribed with
faster-whisper, and each utterance's emotion is classified from its audio and
transcript. Events go to stdout, a WebSocket server (ws://127.0.0.1:8765/events),
MQTT and/or a JSONL file.
"""

EXAMPLES = """\
examples:
  emotion-stream run                                  # bundled sample conversation
  emotion-stream run --source call.mp3 --fast         # a file, as fast as possible
  emotion-stream run --source mic                     # default microphone
  emotion-stream run --source call.wav --channel-names customer,agent   # stereo: one channel each
  arecord -f S16_LE -r 16000 | emotion-stream run --source stdin
  emotion-stream run --set mqtt.enabled=true --set mqtt.port=1883 --jsonl events.jsonl
  emotion-stream config --show                        # effective configuration
  emotion-stream serve --set ingest.token=secret      # call-center ingest (docs/ingest.md)
  emotion-stream replay call.wav --protocol twilio    # send a recording into a running serve
  emotion-stream replay call.wav --roles agent,customer   # stereo: channel 0 is the agent
  emotion-stream report calls/ --out reports/ --roles agent,customer   # offline review files
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="emotion-stream", description=DESCRIPTION, epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    def add_config_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("--config", "-c", metavar="YAML",
                       help="configuration file (default: built-in defaults, "
                            "see configs/default.yaml)")
        p.add_argument("--set", "-s", dest="overrides", action="append", default=[],
                       metavar="KEY=VALUE",
                       help="override any config key, e.g. --set segmenter.hangover_ms=200 "
                            "(repeatable; values are YAML)")

    run = sub.add_parser("run", help="run the pipeline on a source",
                         description="Run the pipeline until the source ends (Ctrl-C to stop).",
                         epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_args(run)
    run.add_argument("--source", metavar="PATH|mic|stdin",
                     help=f"audio file, 'mic', 'stdin', '{BUILTIN_SAMPLE}' (human speech) or "
                          "'builtin:sample-synthetic' "
                          "(default: source.* from the config)")
    run.add_argument("--fast", action="store_true",
                     help="replay files as fast as possible instead of in real time")
    run.add_argument("--jsonl", metavar="FILE", help="also append every event to FILE")
    run.add_argument("--json", action="store_true", help="print events as JSON lines")
    run.add_argument("--channels", choices=("mix", "split"),
                     help="mix: the input's channels mixed to one mono channel (default); "
                          "split: one channel of events per input channel")
    run.add_argument("--channel-names", "--roles", dest="channel_names", metavar="A,B,...",
                     help="names of the input channels (the call's parties), in order "
                          "(implies --channels split), e.g. agent,customer; default "
                          "ch0,ch1,...; source.channel_names, the same as replay --roles")

    rep = sub.add_parser(
        "replay", help="replay a recording into a running serve as a live call",
        description="Send an audio file to a running `emotion-stream serve` over one of its "
                    "ingest protocols, paced at real time; channel 0 is the customer, "
                    "channel 1 the agent unless --roles names them (a mono file is one "
                    "party). The audio travels as "
                    "8 kHz telephone audio. The events come out of the server's publishers.",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    rep.add_argument("file", help="audio file (wav/flac/ogg/mp3, any rate, 1-2 channels; "
                                  "up to 8 over raw) or builtin:sample...")
    rep.add_argument("--protocol", choices=("raw", "twilio", "audiohook"), default="raw",
                     help="raw PCM (/ingest/pcm), Twilio Media Streams or Genesys AudioHook")
    rep.add_argument("--url", help="ingest URL (default ws://127.0.0.1:8766/ingest/pcm, "
                                   "/ingest/twilio or /ingest/audiohook)")
    rep.add_argument("--token", help="raw: the bearer token (ingest.token); twilio: the auth "
                                     "token that signs the handshake; audiohook: the API key")
    rep.add_argument("--signed-url", help="twilio: the URL the signature covers "
                                          "(ingest.twilio_public_url + path; default --url "
                                          "as wss://)")
    rep.add_argument("--pace", type=float, default=1.0,
                     help="times real time (default 1: live; 4: four times faster)")
    rep.add_argument("--stream-id", help="the call's id (default: the file name); its events "
                     "carry <route>:<id> (pcm:, twilio:, audiohook:) unless the server runs "
                     "with ingest.namespace_stream_ids=false")
    rep.add_argument("--roles", metavar="A,B",
                     help="the channels' parties, channel 0 first, one per channel, e.g. "
                          "agent,customer (the events' channel names; as run --roles). "
                          "twilio/audiohook carry customer and agent only; raw any names")

    report = sub.add_parser(
        "report", help="review files for recorded calls (CSV, captions, summary, HTML)",
        description="Run the pipeline offline (as run --fast) over recordings: files, or\n"
                    "folders (their audio files, sorted). Per file, a folder in --out named\n"
                    "after it holds events.jsonl, utterances.csv, captions.vtt, captions.srt,\n"
                    "summary.json and report.html (docs/report.md). A file that cannot be\n"
                    "read is named on stderr, the others are still reported; the exit\n"
                    "status is 1 if any failed.",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_args(report)
    report.add_argument("inputs", nargs="+", metavar="FILE_OR_DIR",
                        help="audio files (wav/flac/ogg/mp3, any rate) or folders of them")
    report.add_argument("--out", "-o", required=True, metavar="DIR",
                        help="where the per-call folders go (created if missing)")
    report.add_argument("--roles", metavar="A,B,...",
                        help="the parties of the files' channels, channel 0 first, e.g. "
                             "agent,customer (as run --roles); without it each file is "
                             "mixed to one party")

    serve = sub.add_parser(
        "serve", help="serve live calls (raw PCM, Twilio Media Streams, Genesys AudioHook)",
        description="Accept calls over WebSocket on ingest.port (default 8766) and publish "
                    "per-party emotion events until Ctrl-C. See docs/ingest.md.",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_args(serve)
    serve.add_argument("--jsonl", metavar="FILE", help="also append every event to FILE")
    serve.add_argument("--json", action="store_true", help="print events as JSON lines")
    serve.add_argument("--ray", action="store_true",
                       help="run as a Ray Serve application (pip install emotion-stream[ray]; "
                            "ray.* config, events on MQTT; docs/scaling.md)")

    gateway = sub.add_parser(
        "gateway", help="serve WebSocket subscribers and the dashboard from MQTT",
        description="Subscribe to the MQTT broker every replica publishes to and serve the "
                    "WebSocket subscriber protocol (/events) and the dashboard on "
                    "websocket.port, for all calls. See docs/scaling.md.")
    add_config_args(gateway)

    cfg = sub.add_parser("config", help="check a configuration and print the effective one")
    add_config_args(cfg)
    cfg.add_argument("--show", action="store_true", help="print the effective configuration")

    sub.add_parser("schema", help="print the JSON Schema of published events")
    sub.add_parser("devices", help="list audio input devices (for source.mic_device)")
    return parser


def source_overrides(args: argparse.Namespace) -> list[str]:
    extra: list[str] = []
    if args.source:
        if args.source in ("mic", "stdin"):
            extra.append(f"source.kind={args.source}")
        else:
            extra += ["source.kind=file", f"source.path={json.dumps(args.source)}"]
    if args.fast:
        extra.append("source.realtime=false")
    if args.channels or args.channel_names:
        extra.append(f"source.channels={args.channels or 'split'}")
    if args.channel_names:
        extra.append(f"source.channel_names={json.dumps(args.channel_names)}")
    if args.jsonl:
        extra.append(f"jsonl.path={json.dumps(args.jsonl)}")
    if args.json:
        extra.append("stdout.format=json")
    return extra


def serve_overrides(args: argparse.Namespace) -> list[str]:
    extra: list[str] = []
    if args.jsonl:
        extra.append(f"jsonl.path={json.dumps(args.jsonl)}")
    if args.json:
        extra.append("stdout.format=json")
    return extra


def report_overrides(args: argparse.Namespace) -> list[str]:
    """``report --roles``: as ``run --roles``, one party per channel."""
    if args.roles is None:
        return []
    from streamer.sources.replay import parse_roles

    names = ",".join(parse_roles(args.roles))
    return ["source.channels=split", f"source.channel_names={json.dumps(names)}"]


def command_report(args: argparse.Namespace, config: AppConfig) -> int:
    from pathlib import Path

    from tqdm import tqdm

    from streamer.apps.report import run_report

    # tqdm.write: the error lines do not break the progress bar on a terminal
    result = run_report(config, args.inputs, Path(args.out),
                        on_error=lambda line: tqdm.write(f"emotion-stream: error: {line}",
                                                         file=sys.stderr))
    done = [f for f in result.files if f.out_dir is not None]
    for f in done:
        print(f"{f.path}: {f.utterances} utterances -> {f.out_dir}")
    if result.failed:
        print(f"emotion-stream: {len(done)} reported, {result.failed} failed (see above)",
              file=sys.stderr)
    return 1 if result.failed else 0


def command_run(config: AppConfig) -> int:
    from streamer.apps.pipeline import run_pipeline
    from streamer.engine.loading import load_models

    source = make_source(config.source)
    logging.getLogger(__name__).info("loading models ...")
    models = load_models(config)
    summary = asyncio.run(run_pipeline(config, source, models))
    logging.getLogger(__name__).info("done: %d utterances, %d events", summary.utterances,
                                     summary.events_published)
    return 1 if summary.undelivered else 0  # events were lost (MQTT): say so in the status


# After SIGINT/SIGTERM, serve stops within ``hard_stop_s`` at most; a second signal stops
# it at once.
HARD_STOP_S = 30.0  # the least


def hard_stop_s(config: AppConfig) -> float:
    """The drain deadline, then the cut calls' handlers (``http_edge.STOP_TIMEOUT_S``) and
    the MQTT flush (``runtime.DRAIN_TIMEOUT_S``), and a margin: 40 s by default."""
    from streamer.publish.http_edge import STOP_TIMEOUT_S
    from streamer.runtime import DRAIN_TIMEOUT_S

    return max(HARD_STOP_S, config.operations.drain_timeout_s + STOP_TIMEOUT_S
               + DRAIN_TIMEOUT_S + 5.0)


def command_serve(config: AppConfig) -> int:
    import signal

    from streamer.apps.service import run_service
    from streamer.engine.loading import Models, load_models

    log = logging.getLogger(__name__)
    models: Models | Callable[[], Models]
    if config.operations.listen_while_loading:
        models = functools.partial(load_models, config)  # loaded by serve, port open
    else:
        log.info("loading models ...")
        models = load_models(config)
    hard_stop = hard_stop_s(config)
    forced: list[str] = []

    async def serve() -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        main_task = asyncio.current_task()
        assert main_task is not None

        def force(why: str) -> None:
            forced.append(why)
            main_task.cancel()

        def on_signal(sig: signal.Signals) -> None:
            if stop.is_set():
                log.warning("%s again: stopping now", sig.name)
                force(f"second {sig.name}")
                return
            log.info("%s: stopping (at most %.0f s; send it again to stop now)", sig.name,
                     hard_stop)
            stop.set()
            loop.call_later(hard_stop, force, f"not stopped {hard_stop:.0f} s after {sig.name}")

        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, on_signal, sig)
        return await run_service(config, models, stop)

    try:
        lost = asyncio.run(serve())
    except asyncio.CancelledError:
        log.error("stopped forcibly (%s); events in progress may be lost", ", ".join(forced))
        return 1
    return 1 if lost else 0  # events were lost (MQTT): say so in the exit status


def command_serve_ray(config: AppConfig) -> int:
    try:
        from streamer.scale.ray_app import run_ray
    except ImportError as exc:
        raise StreamerError(f"serve --ray needs Ray Serve ({exc}); install it with "
                            "pip install 'emotion-stream[ray]'") from exc
    return run_ray(config)


def command_gateway(config: AppConfig) -> int:
    import signal

    from streamer.apps.gateway import run_gateway

    async def gateway() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await run_gateway(config, stop)

    asyncio.run(gateway())
    return 0


def command_replay(args: argparse.Namespace) -> int:
    from streamer.sources.replay import parse_roles, replay

    roles = parse_roles(args.roles) if args.roles is not None else ()
    result = asyncio.run(replay(args.file, args.protocol, url=args.url, token=args.token,
                                pace=args.pace, stream_id=args.stream_id,
                                signed_url=args.signed_url, roles=roles))
    named = f": {','.join(result.roles)}" if result.roles else ""
    print(f"replayed {result.audio_s:.1f} s ({result.parties} "
          f"part{'y' if result.parties == 1 else 'ies'}{named}) over {result.protocol} to "
          f"{result.url}")
    return 0


def command_devices() -> int:
    from streamer.sources.local import _import_sounddevice

    sd = _import_sounddevice()
    devices = sd.query_devices()
    inputs = [(i, d) for i, d in enumerate(devices) if d["max_input_channels"] > 0]
    if not inputs:
        print("no audio input devices found")
    for i, d in inputs:
        print(f"{i}: {d['name']} ({d['max_input_channels']} ch, "
              f"{d['default_samplerate']:.0f} Hz)")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "schema":
            print((resources.files("streamer") / "schema" / "events.schema.json")
                  .read_text("utf-8"))
            return 0
        if args.command == "devices":
            return command_devices()
        if args.command == "replay":
            logging.basicConfig(level="INFO", stream=sys.stderr,
                                format="%(asctime)s %(levelname)s %(name)s: %(message)s")
            return command_replay(args)
        extra = (source_overrides(args) if args.command == "run"
                 else serve_overrides(args) if args.command == "serve"
                 else report_overrides(args) if args.command == "report" else [])
        config = load_config(args.config, args.overrides + extra)
        logging.basicConfig(level=config.log_level, stream=sys.stderr,
                            format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        if args.command == "config":
            if args.show:
                print(yaml.safe_dump(redacted(config), sort_keys=False))  # no secrets
            else:
                print("configuration OK")
            return 0
        if args.command == "serve" and args.ray:
            return command_serve_ray(config)
        if args.command == "serve":
            return command_serve(config)
        if args.command == "gateway":
            return command_gateway(config)
        if args.command == "report":
            return command_report(args, config)
        return command_run(config)
    except StreamerError as exc:
        print(f"emotion-stream: error: {exc}", file=sys.stderr)
        return 2
    except BaseExceptionGroup as group:  # from a task group: report our errors plainly
        errors, others = group.split(StreamerError)
        if errors is None or others is not None:
            raise
        for error in _leaves(errors):
            print(f"emotion-stream: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def _leaves(group: BaseExceptionGroup[StreamerError]) -> list[BaseException]:
    out: list[BaseException] = []
    for exc in group.exceptions:
        out += _leaves(exc) if isinstance(exc, BaseExceptionGroup) else [exc]
    return out


if __name__ == "__main__":
    sys.exit(main())
