"""`python -m streams models list|serve`: which model versions Triton serves, and a live swap.

`serve MODEL N` asks Triton (explicit model control) to load the model again with a config
override whose version policy is `specific [N]`. Triton loads version N beside the serving
one, switches requests that name no version to it once it is ready, and unloads the old
version after its in-flight requests have completed; if the load fails, the serving version
stays (Triton's model management: "if the reload fails, the loaded model is unchanged"). So a
swap costs no request, and a rollback is the same command with the old number. The worker
notices the change from the `model_version` of the next answers (streams.inference) and reads
the new version's card then.

The override is the config Triton serves now (every version's card included), or `--config`,
the regenerated config.pbtxt after a build added a version. A version without a card is
refused here: the worker could not name its outputs.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any

from google.protobuf import json_format, text_format
from tritonclient.grpc import InferenceServerClient
from tritonclient.grpc import model_config_pb2 as mc
from tritonclient.utils import InferenceServerException

from streams.errors import ConfigError
from streams.labels import version_card
from streams.settings import Settings

log = logging.getLogger("streams.models_cli")


def add_parser(sub: Any) -> None:
    models = sub.add_parser("models", help="list the served model versions, or swap (and roll back) one live")
    action = models.add_subparsers(dest="models_command", required=True)
    action.add_parser("list", help="every model's versions, their state and their cards")
    serve = action.add_parser("serve", help="serve version N of a model instead of the current one, live")
    serve.add_argument("model", help="e.g. text_encoder")
    serve.add_argument("version", type=int, help="the version number to serve (rollback: the old one)")
    serve.add_argument(
        "--config", type=Path, help="a config.pbtxt to load (default: the config Triton serves now)"
    )


def served_config(client: InferenceServerClient, model: str) -> mc.ModelConfig:
    answer = client.get_model_config(model, as_json=True)
    return json_format.ParseDict(answer["config"], mc.ModelConfig(), ignore_unknown_fields=True)


def override(cfg: mc.ModelConfig, version: int) -> str:
    """The load request's config: `cfg` serving `version` only, as Triton's JSON."""
    as_dict = json_format.MessageToDict(cfg, preserving_proto_field_name=True)
    version_card({"config": as_dict}, version)  # raises ConfigError when there is no card
    swapped = mc.ModelConfig()
    swapped.CopyFrom(cfg)
    swapped.version_policy.specific.versions[:] = [version]
    return json_format.MessageToJson(swapped, preserving_proto_field_name=True)


def serve(client: InferenceServerClient, model: str, version: int, config: Path | None = None) -> None:
    cfg = (
        text_format.Parse(config.read_text(), mc.ModelConfig())
        if config is not None
        else served_config(client, model)
    )
    if cfg.name != model:
        raise ConfigError(f"{config} configures {cfg.name!r}, not {model!r}")
    body = override(cfg, version)
    client.load_model(model, config=body)  # returns once the new version is loaded (or raises)
    if not client.is_model_ready(model, str(version)):
        raise ConfigError(f"{model} version {version} is not ready after its load")


def listing(client: InferenceServerClient) -> list[dict[str, Any]]:
    rows = []
    for entry in client.get_model_repository_index(as_json=True).get("models", []):
        name = entry["name"]
        row: dict[str, Any] = {"model": name, "state": entry.get("state"), "version": entry.get("version")}
        if entry.get("state") == "READY":
            cfg = client.get_model_config(name, as_json=True)
            params = cfg["config"].get("parameters", {})
            cards = {k: json.loads(v["string_value"]) for k, v in params.items() if k.startswith("card.")}
            policy = cfg["config"].get("version_policy", {})
            row["serving"] = [int(v) for v in policy.get("specific", {}).get("versions", [])] or policy
            row["cards"] = {
                k: {f: c.get(f) for f in ("training", "built_at", "inputs")} for k, c in cards.items()
            }
        rows.append(row)
    return rows


def main(args: argparse.Namespace) -> int:
    settings = Settings()
    client = InferenceServerClient(url=settings.triton_grpc_url)
    try:
        if args.models_command == "list":
            for row in listing(client):
                print(json.dumps(row, sort_keys=True))
            return 0
        serve(client, args.model, args.version, args.config)
        print(f"{args.model}: serving version {args.version}")
        return 0
    except (ConfigError, InferenceServerException, OSError) as exc:
        print(f"error: {exc}")
        return 1
    finally:
        client.close()
