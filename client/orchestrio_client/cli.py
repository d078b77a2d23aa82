"""`ork`: Orchestrio's command line. Each command makes one REST call (its help names it) through
the SDK; `--wait` and `--follow` then poll until the result is there.

Exit codes (for scripts): see `EXIT_CODES` and docs/cli.md.
"""

from __future__ import annotations

import json
import sys
import time
from functools import wraps
from typing import Any, Callable, Iterable

import click

from . import config, errors
from ._generated import OPERATIONS
from ._version import __version__
from .client import FINISHED_TASK_STATUSES, Client

OK = 0
PAGE = 200  # the API's largest page: a list command makes as few requests as it can
EXIT_CODES = {
    "error": 1,  # anything not below
    "usage": 2,  # bad command line (click's own)
    "auth": 3,  # 401, 403: no/bad token, or not allowed
    "not_found": 4,  # 404
    "conflict": 5,  # 409: another operation is running, a name is taken
    "limit": 6,  # 402: plan limit
    "validation": 7,  # 422 (and 413): the input was refused
    "state": 8,  # 400: wrong state for the action (stop a stopped instance)
    "rate_limited": 9,  # 429 after the client's retries
    "server": 10,  # 5xx: the control plane or the instance failed
    "unreachable": 11,  # no answer: connection refused, DNS, TLS
    "timeout": 12,  # --wait / wait / --follow ran out of time
    "task_failed": 13,  # tasks run --follow: the task ended but did not succeed
}
BY_ERROR: list[tuple[type[Exception], str]] = [
    (errors.AuthenticationError, "auth"),
    (errors.PermissionDenied, "auth"),
    (errors.NotFound, "not_found"),
    (errors.Conflict, "conflict"),
    (errors.PlanLimitError, "limit"),
    (errors.ValidationError, "validation"),
    (errors.PayloadTooLarge, "validation"),
    (errors.BadRequest, "state"),
    (errors.RateLimited, "rate_limited"),
    (errors.WaitTimeout, "timeout"),
    (errors.ServerError, "server"),
    (errors.TransportError, "unreachable"),
]


class Failure(click.ClickException):
    def __init__(self, message: str, kind: str = "error") -> None:
        super().__init__(message)
        self.exit_code = EXIT_CODES[kind]


# -- context: the client and the output format --------------------------------------------------


class State:
    def __init__(self, url: str | None, token: str | None, profile: str | None, output: str, retries: int = 3) -> None:
        self.url_flag, self.token_flag, self.profile_flag = url, token, profile
        self.output = output
        self.retries = retries
        self._client: Client | None = None

    @property
    def json(self) -> bool:
        return self.output == "json"

    def client(self) -> Client:
        if self._client is None:
            try:
                url, token, _ = config.resolve(url=self.url_flag, token=self.token_flag, profile=self.profile_flag)
            except config.ConfigError as exc:
                raise Failure(str(exc), "usage") from exc
            if not token:
                raise Failure("no API token: run `ork login`, or set ORK_TOKEN", "auth")
            self._client = Client(url, token, max_retries=self.retries)
        return self._client


pass_state = click.make_pass_decorator(State)


def rest(*operation_ids: str) -> Callable:
    """Name the command's REST call(s) at the head of its help, from the generated operations."""

    def decorate(fn: Callable) -> Callable:
        calls = " + ".join(f"{OPERATIONS[op][0]} {OPERATIONS[op][1]}" for op in operation_ids)
        doc = (fn.__doc__ or "").strip()
        fn.__doc__ = f"{calls}: {doc}" if doc else calls
        fn.__rest__ = operation_ids
        return fn

    return decorate


def api_errors(fn: Callable) -> Callable:
    """Turn an API error into a message on stderr and the exit code of its kind."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except errors.OrchestrioError as exc:
            kind = next((k for cls, k in BY_ERROR if isinstance(exc, cls)), "error")
            message = exc.message if isinstance(exc, errors.ApiError) else str(exc)
            if isinstance(exc, errors.PlanLimitError) and exc.limit:
                message += f" (limit: {exc.limit}, plan: {exc.plan})"
            if isinstance(exc, errors.Conflict) and exc.operation:
                message += f" (operation {exc.operation.get('kind')} {exc.operation.get('status')})"
            if isinstance(exc, errors.RateLimited) and exc.retry_after:
                message += f" (retry after {exc.retry_after:g}s)"
            raise Failure(message, kind) from exc

    return wrapper


# -- output ---------------------------------------------------------------------------------------


def emit(state: State, data: Any, columns: Iterable[str] | None = None) -> None:
    """JSON for `--output json`; else a table for a list, `key: value` lines for a record."""
    if state.json:
        click.echo(json.dumps(data, indent=2, sort_keys=False, default=str))
        return
    if data is None:
        return
    if isinstance(data, list):
        click.echo(table(data, list(columns or (data[0].keys() if data else []))))
        return
    if isinstance(data, dict):
        # Lists of records (a request's instances, a deployment's steps) follow as tables of their own.
        nested = {k: v for k, v in data.items() if isinstance(v, list) and v and all(isinstance(row, dict) for row in v)}
        width = max((len(str(k)) for k in data if k not in nested), default=0)
        for key, value in data.items():
            if key not in nested:
                click.echo(f"{str(key).ljust(width)}  {_cell(value, full=True)}")
        for key, rows in nested.items():
            click.echo(f"\n{key}:")
            click.echo(table(rows, list(rows[0].keys())))
        return
    click.echo(str(data))


def table(rows: list[dict], columns: list[str]) -> str:
    if not rows:
        return "(none)"
    cells = [[_cell(row.get(c)) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.upper().ljust(w) for c, w in zip(columns, widths)).rstrip()]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip() for r in cells]
    return "\n".join(lines)


def _cell(value: Any, full: bool = False) -> str:
    if value is None:
        return "-"
    if isinstance(value, dict) and not full and set(value) >= {"kind", "status"}:
        return f"{value['kind']}:{value['status']}"
    if isinstance(value, (dict, list)):
        return json.dumps(value, default=str)
    text = str(value)
    return text if full or len(text) <= 60 else text[:57] + "..."


def progress(state: State, message: str) -> None:
    """Progress goes to stderr, so stdout stays the result (and valid JSON with --output json)."""
    click.echo(message, err=True)


def pairs(values: Iterable[str], what: str) -> dict[str, Any]:
    """`key=value` options; a value that parses as JSON is taken as JSON (`n=3`, `x=null`)."""
    out: dict[str, Any] = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{item!r}: expected KEY=VALUE", param_hint=what)
        try:
            out[key] = json.loads(value)
        except ValueError:
            out[key] = value
    return out


def string_pairs(values: Iterable[str], what: str) -> dict[str, str]:
    out = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{item!r}: expected KEY=VALUE", param_hint=what)
        out[key] = value
    return out


def read_json(path: str) -> dict:
    try:
        with click.open_file(path) as handle:
            data = json.load(handle)
    except (OSError, ValueError) as exc:
        raise Failure(f"{path}: not readable JSON ({exc})", "validation") from exc
    if not isinstance(data, dict):
        raise Failure(f"{path}: expected a JSON object", "validation")
    return data


# -- the root -----------------------------------------------------------------------------------


@click.group(name="ork", context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("--url", envvar="ORK_URL", help="The installation's URL (ORK_URL; else the profile's; else http://127.0.0.1:8000).")
@click.option("--token", envvar="ORK_TOKEN", help="An API token, ork_live_… (ORK_TOKEN; else the profile's, from `ork login`).")
@click.option("--profile", envvar="ORK_PROFILE", help="Which saved installation to use (ORK_PROFILE; default: the last `ork login`).")
@click.option("-o", "--output", type=click.Choice(["table", "json"]), default="table", envvar="ORK_OUTPUT", show_default=True, help="Human tables, or JSON for scripts.")
@click.option("--retries", type=click.IntRange(0, 10), default=3, envvar="ORK_RETRIES", show_default=True, help="Retries of a 429/503 answer or a refused connection (ORK_RETRIES).")
@click.version_option(__version__, prog_name="ork")
@click.pass_context
def cli(ctx: click.Context, url: str | None, token: str | None, profile: str | None, output: str, retries: int) -> None:
    """Orchestrio from the command line: every command is one REST call of /api/v1 (its --help
    names it), made with your API token through the Python SDK.

    \b
    Start:  ork login --url http://127.0.0.1:8000      (asks for the token)
            ork instances create demo --wait
            ork instances list -o json
    Exit codes: 0 ok, 3 auth, 4 not found, 5 conflict, 6 plan limit, 7 validation, 8 wrong state,
    9 rate limited, 10 server error, 11 unreachable, 12 timed out, 13 task failed (docs/cli.md).
    """
    ctx.obj = State(url, token, profile, output, retries)


def main(argv: list[str] | None = None) -> int:
    try:
        cli.main(args=argv, prog_name="ork", standalone_mode=True)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    return OK


# -- login, logout, profiles ----------------------------------------------------------------------


@cli.command()
@click.option("--url", "login_url", help="The installation's URL (default: --url / ORK_URL, else http://127.0.0.1:8000).")
@click.option("--token", "login_token", help="The API token (default: ORK_TOKEN, else asked for, not echoed).")
@click.option("--profile", "login_profile", help="Save as this profile (default: `default`), and make it the default.")
@pass_state
@api_errors
@rest("tenant_retrieve")
def login(state: State, login_url: str | None, login_token: str | None, login_profile: str | None) -> None:
    """Check the token against the installation, then save it (mode 0600) in
    $XDG_CONFIG_HOME/orchestrio/config.json (~/.config/orchestrio/config.json)."""
    import os

    url = login_url or state.url_flag or config.DEFAULT_URL
    token = login_token or state.token_flag or os.environ.get("ORK_TOKEN")
    if not token:
        token = click.prompt("API token (ork_live_…)", hide_input=True).strip()
    try:
        data = config.load()
    except config.ConfigError as exc:
        raise Failure(str(exc), "usage") from exc
    name = login_profile or state.profile_flag or config.DEFAULT_PROFILE
    with Client(url, token, max_retries=state.retries) as client:
        tenant = client.tenant_retrieve()
    data["profiles"][name] = {"url": url.rstrip("/"), "token": token}
    data["default_profile"] = name
    try:
        path = config.save(data)
    except config.ConfigError as exc:
        raise Failure(str(exc)) from exc
    if state.json:
        emit(state, {"profile": name, "url": url, "tenant_id": tenant["tenant_id"], "config": str(path)})
    else:
        click.echo(f"Logged in to {url} as tenant {tenant['tenant_id']} (profile {name}; token saved in {path})")


@cli.command()
@click.option("--profile", "logout_profile", help="The profile to forget (default: the current one).")
@pass_state
def logout(state: State, logout_profile: str | None) -> None:
    """Forget a saved token (no REST call: the token stays valid; revoke it with `ork tokens revoke`)."""
    try:
        data = config.load()
    except config.ConfigError as exc:
        raise Failure(str(exc), "usage") from exc
    name = config.profile_name(logout_profile or state.profile_flag, data)
    if data["profiles"].pop(name, None) is None:
        raise Failure(f"no profile {name!r} saved", "not_found")
    if data.get("default_profile") == name:
        data["default_profile"] = next(iter(data["profiles"]), None)
    try:
        config.save(data)
    except config.ConfigError as exc:
        raise Failure(str(exc)) from exc
    click.echo(f"Logged out of profile {name}")


@cli.command()
@pass_state
def profiles(state: State) -> None:
    """The saved profiles (no REST call; tokens are not shown)."""
    data = config.load()
    rows = [{"profile": n, "url": p.get("url"), "default": n == data.get("default_profile")} for n, p in sorted(data["profiles"].items())]
    emit(state, rows, ["profile", "url", "default"])


@cli.command()
@click.argument("shell", type=click.Choice(["bash", "zsh", "fish"]))
def completion(shell: str) -> None:
    """Print the shell completion script: eval "$(ork completion bash)" (no REST call)."""
    from click.shell_completion import get_completion_class

    cls = get_completion_class(shell)
    click.echo(cls(cli, {}, "ork", "_ORK_COMPLETE").source())


# -- instances ------------------------------------------------------------------------------------

INSTANCE_COLUMNS = ["instance_id", "state", "health_status", "plan_id", "region", "operation", "access_url"]


@cli.group()
def instances() -> None:
    """Instances: list, create, lifecycle verbs, wait, logs, runtime, config."""


def last_log_seq(state: State, instance_id: str) -> int:
    """The instance's latest lifecycle log line (0: none yet, or no such instance)."""
    client = state.client()
    try:
        count = client.instances_logs_list(instance_id, limit=1).count
        if not count:
            return 0
        return client.instances_logs_list(instance_id, limit=1, offset=count - 1).results[0]["seq"]
    except (errors.NotFound, IndexError):
        return 0


def wait_with_progress(state: State, instance_id: str, target: str, timeout: float, after_seq: int = 0) -> dict:
    """Wait for `target`, printing each state change and each lifecycle log line after
    `after_seq` (taken before the action) on stderr."""
    client = state.client()
    deadline = time.monotonic() + timeout
    last_state = None
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise Failure(f"timed out after {timeout:g}s waiting for {instance_id} to be {target} (it is {last_state})", "timeout")
        try:
            record = client.instances_wait_retrieve(instance_id, state=target, timeout=max(1, min(2, int(left))))
        except errors.WaitTimeout:
            record = None
        except errors.NotFound:
            if target == "destroyed":
                progress(state, f"{instance_id}: destroyed")
                return {"instance_id": instance_id, "state": "destroyed"}
            raise
        if record is None or record["state"] != last_state:
            try:
                for line in client.instances_logs_list(instance_id, after_seq=after_seq):
                    after_seq = line["seq"]
                    progress(state, f"  {line['stage']}: {line['message']}")
            except errors.NotFound:
                pass
        if record is not None:
            progress(state, f"{instance_id}: {record['state']}")
            return record
        current = client.instances_retrieve(instance_id)["state"] if target != "destroyed" else None
        if current and current != last_state:
            progress(state, f"{instance_id}: {current}...")
            last_state = current


def lifecycle_command(verb: str, operation_id: str, target: str, summary: str) -> None:
    @instances.command(name=verb)
    @click.argument("instance_id")
    @click.option("--wait", "wait_", is_flag=True, help=f"Then wait until it is {target}, showing progress.")
    @click.option("--timeout", default=300.0, show_default=True, help="Seconds --wait waits.")
    @pass_state
    @api_errors
    @rest(operation_id)
    def command(state: State, instance_id: str, wait_: bool, timeout: float) -> None:
        seq = last_log_seq(state, instance_id) if wait_ else 0
        record = getattr(state.client(), operation_id)(instance_id)
        if wait_:
            record = wait_with_progress(state, instance_id, target, timeout, seq)
        emit(state, record)

    command.help = f"{command.help}: {summary}"


lifecycle_command("stop", "instances_stop_create", "stopped", "Stop a running instance (202).")
lifecycle_command("start", "instances_start_create", "running", "Start a stopped instance (202).")
lifecycle_command("restart", "instances_restart_create", "running", "Stop then start, as one operation (202).")
lifecycle_command("suspend", "instances_suspend_create", "suspended", "Suspend a running instance (202).")
lifecycle_command("resume", "instances_resume_create", "running", "Resume a suspended instance (202).")
lifecycle_command("sleep", "instances_sleep_create", "asleep", "Put a running instance to sleep; the next request to it wakes it (202).")
lifecycle_command("wake", "instances_wake_create", "running", "Wake an asleep instance (202).")


@instances.command(name="list")
@click.option("--state", "states", multiple=True, help="Only in this state (repeatable).")
@click.option("--label", "labels", multiple=True, help="key:value (repeatable: all must match).")
@click.option("--blueprint", help="Only of this blueprint.")
@pass_state
@api_errors
@rest("instances_list")
def instances_list(state: State, states: tuple[str, ...], labels: tuple[str, ...], blueprint: str | None) -> None:
    """Live (not destroyed) instances, every page."""
    rows = list(state.client().instances_list(state=list(states) or None, label=list(labels) or None, blueprint_name=blueprint, limit=PAGE))
    emit(state, rows, INSTANCE_COLUMNS)


@instances.command(name="get")
@click.argument("instance_id")
@pass_state
@api_errors
@rest("instances_retrieve")
def instances_get(state: State, instance_id: str) -> None:
    """An instance's full record."""
    emit(state, state.client().instances_retrieve(instance_id))


@instances.command(name="create")
@click.argument("instance_id")
@click.option("--blueprint", help="Blueprint name (default: OpenClaw).")
@click.option("--plan", help="Instance plan (default: openclaw-basic).")
@click.option("--region", help="Region (default: the installation's DEFAULT_REGION).")
@click.option("--label", "labels", multiple=True, help="key=value (repeatable).")
@click.option("--idempotency-key", help="Your own Idempotency-Key (default: a fresh one, reused on retries).")
@click.option("--wait", "wait_", is_flag=True, help="Then wait until it is running, showing progress.")
@click.option("--timeout", default=300.0, show_default=True, help="Seconds --wait waits.")
@pass_state
@api_errors
@rest("instances_create")
def instances_create(state: State, instance_id: str, blueprint, plan, region, labels, idempotency_key, wait_: bool, timeout: float) -> None:
    """Create an instance (201, `pending`); a background job provisions it."""
    from ._base import UNSET

    record = state.client().instances_create(
        instance_id=instance_id,
        blueprint_name=blueprint or UNSET,
        plan_id=plan or UNSET,
        region=region or UNSET,
        labels=string_pairs(labels, "--label") or UNSET,
        idempotency_key=idempotency_key,
    )
    if wait_:
        record = wait_with_progress(state, instance_id, "running", timeout)
    emit(state, record)


@instances.command(name="chat")
@click.argument("instance_id")
@click.argument("message")
@click.option("--conversation", help="Go on with this conversation id (a new one when omitted).")
@click.option("--model", help="A model of the instance's policy (its default when omitted).")
@click.option("--user", help="Your end user's id (counted, hashed, in unique end users).")
@pass_state
@api_errors
@rest("instances_chat_create")
def instances_chat(state: State, instance_id: str, message: str, conversation: str | None, model: str | None, user: str | None) -> None:
    """Send a message to the instance's agent runtime and print its reply (docs/agent.md)."""
    from ._base import UNSET

    exchange = state.client().instances_chat_create(instance_id, message=message, conversation_id=conversation or UNSET, model=model or UNSET, user=user or UNSET)
    if state.json:
        emit(state, exchange)
        return
    click.echo(exchange["reply"])
    click.echo(f"{exchange['model']} · {exchange['skill']} · {exchange['tokens_in']} tokens in, {exchange['tokens_out']} out · conversation {exchange['conversation_id']}", err=True)


@instances.command(name="resize")
@click.argument("instance_id")
@click.option("--plan", help="The new instance plan.")
@click.option("--instance-type", help="The new instance type (AWS).")
@click.option("--wait", "wait_", is_flag=True, help="Then wait until the resize is done.")
@click.option("--timeout", default=300.0, show_default=True)
@pass_state
@api_errors
@rest("instances_resize_update")
def instances_resize(state: State, instance_id: str, plan, instance_type, wait_: bool, timeout: float) -> None:
    """Resize a running or stopped instance (202); it returns to its state after."""
    from ._base import UNSET

    if not (plan or instance_type):
        raise click.UsageError("give --plan or --instance-type")
    client = state.client()
    before = client.instances_retrieve(instance_id)["state"]
    seq = last_log_seq(state, instance_id) if wait_ else 0
    record = client.instances_resize_update(instance_id, plan_id=plan or UNSET, new_instance_type=instance_type or UNSET)
    if wait_:
        record = wait_with_progress(state, instance_id, before, timeout, seq)
    emit(state, record)


@instances.command(name="destroy")
@click.argument("instance_id")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@click.option("--wait", "wait_", is_flag=True, help="Then wait until it is destroyed.")
@click.option("--timeout", default=300.0, show_default=True)
@pass_state
@api_errors
@rest("instances_destroy")
def instances_destroy(state: State, instance_id: str, yes: bool, wait_: bool, timeout: float) -> None:
    """Destroy an instance (202 `destroying`; 200 `already_deleted` when it already is)."""
    if not yes:
        click.confirm(f"Destroy {instance_id}? This cannot be undone", abort=True, err=True)
    seq = last_log_seq(state, instance_id) if wait_ else 0
    record = state.client().instances_destroy(instance_id)
    if wait_ and not record.get("already_deleted"):
        record = wait_with_progress(state, instance_id, "destroyed", timeout, seq)
    emit(state, record)


@instances.command(name="wait")
@click.argument("instance_id")
@click.option("--state", "target", default="running", show_default=True, help="The state to wait for.")
@click.option("--timeout", default=300.0, show_default=True, help="Seconds to wait (long polls of at most 300 s each).")
@pass_state
@api_errors
@rest("instances_wait_retrieve")
def instances_wait(state: State, instance_id: str, target: str, timeout: float) -> None:
    """Wait until the instance is in a state (exit 12 when the time runs out, 8 when it cannot get there)."""
    emit(state, state.client().wait(instance_id, target, timeout=timeout))


@instances.command(name="logs")
@click.argument("instance_id")
@pass_state
@api_errors
@rest("instances_logs_list")
def instances_logs(state: State, instance_id: str) -> None:
    """The instance's lifecycle log, in order."""
    rows = list(state.client().instances_logs_list(instance_id, limit=PAGE))
    if state.json:
        emit(state, rows)
    else:
        for line in rows:
            click.echo(f"{line['created_at']}  {line['level']:<7} {line['stage']:<14} {line['message']}")


@instances.command(name="app-logs")
@click.argument("instance_id")
@click.option("--tail", type=click.IntRange(1, 1000), default=100, show_default=True, help="The latest N lines.")
@click.option("--stream", type=click.Choice(["stdout", "stderr"]), help="Only this stream.")
@click.option("-q", "--grep", "q", help="Only lines containing this text (case-insensitive).")
@click.option("--follow", "-f", is_flag=True, help="Then print new lines as they come (polling), until Ctrl-C or --timeout.")
@click.option("--timeout", type=float, help="With --follow: stop after this many seconds.")
@pass_state
@api_errors
@rest("instances_app_logs_retrieve")
def instances_app_logs(state: State, instance_id: str, tail: int, stream: str | None, q: str | None, follow: bool, timeout: float | None) -> None:
    """The instance's own stdout and stderr (it must be running)."""
    client = state.client()
    if not follow:
        answer = client.instances_app_logs_retrieve(instance_id, tail=tail, stream=stream, q=q)
        if state.json:
            emit(state, answer)
            return
        lines = answer["lines"]
        if not lines:
            restarts = answer.get("restarts", 0)
            click.echo(f"(no lines{' match' if q or stream else ' yet'}; started {answer.get('starts', 0)} time(s), {restarts} restart(s))", err=True)
    else:
        lines = client.follow_app_logs(instance_id, tail=tail, stream=stream, q=q, timeout=timeout)
    try:
        for line in lines:
            if state.json:
                click.echo(json.dumps(line))  # --follow -o json: one JSON object a line
            else:
                click.echo(f"{line['ts']}  {line['stream']:<6} {line['line']}")
    except KeyboardInterrupt:
        pass


@instances.command(name="stats")
@click.argument("instance_id")
@click.option("--window", type=click.Choice(["1h", "24h", "30d"]), default="1h", show_default=True, help="1h and 24h: a point a minute; 30d: a point an hour.")
@pass_state
@api_errors
@rest("instances_stats_retrieve")
def instances_stats(state: State, instance_id: str, window: str) -> None:
    """The instance's CPU, memory, network and disk over a window, oldest point first."""
    answer = state.client().instances_stats_retrieve(instance_id, window=window)
    if state.json:
        emit(state, answer)
        return
    emit(state, answer["points"], ["t", "cpu_percent", "rss_bytes", "net_rx_bytes_per_second", "net_tx_bytes_per_second", "disk_read_bytes_per_second", "disk_write_bytes_per_second", "restarts"])


@instances.command(name="request-metrics")
@click.argument("instance_id")
@click.option("--window", type=click.Choice(["1h", "24h", "30d"]), default="1h", show_default=True)
@pass_state
@api_errors
@rest("instances_request_metrics_retrieve")
def instances_request_metrics(state: State, instance_id: str, window: str) -> None:
    """Requests proxied to the instance: count, errors, p50/p95/p99 latency, app health."""
    answer = state.client().instances_request_metrics_retrieve(instance_id, window=window)
    if state.json:
        emit(state, answer)
        return
    totals = answer["totals"]
    click.echo(f"app health: {answer['app_health']} (from {answer['app_health_source']})")
    click.echo(f"{window}: {totals['count']} requests, {totals['errors']} errors ({totals['error_rate']:.1%}), "
               f"p50 {totals['p50_ms']} ms, p95 {totals['p95_ms']} ms, p99 {totals['p99_ms']} ms")  # fmt: skip
    emit(state, answer["points"], ["start", "count", "errors", "p50_ms", "p95_ms", "p99_ms"])


@instances.command(name="operations")
@click.argument("instance_id")
@pass_state
@api_errors
@rest("instances_operations_list")
def instances_operations(state: State, instance_id: str) -> None:
    """The instance's operations, newest first."""
    emit(state, list(state.client().instances_operations_list(instance_id, limit=PAGE)), ["id", "kind", "status", "requested_by", "created_at", "finished_at", "error_code"])


@instances.command(name="runtime")
@click.argument("instance_id")
@pass_state
@api_errors
@rest("instances_runtime_retrieve")
def instances_runtime(state: State, instance_id: str) -> None:
    """What the instance's agent reports, merged with the control plane's view."""
    emit(state, state.client().instances_runtime_retrieve(instance_id))


@instances.command(name="health")
@click.argument("instance_id")
@pass_state
@api_errors
@rest("instances_health_retrieve")
def instances_health(state: State, instance_id: str) -> None:
    """Probe the instance's health path now."""
    emit(state, state.client().instances_health_retrieve(instance_id))


@instances.group(name="config")
def instances_config() -> None:
    """The instance's platform config."""


@instances_config.command(name="get")
@click.argument("instance_id")
@pass_state
@api_errors
@rest("instances_config_retrieve")
def instances_config_get(state: State, instance_id: str) -> None:
    """The instance's platform config (JSON)."""
    click.echo(json.dumps(state.client().instances_config_retrieve(instance_id), indent=2))


@instances_config.command(name="set")
@click.argument("instance_id")
@click.argument("values", nargs=-1, required=True, metavar="KEY=VALUE...")
@click.option("--apply", is_flag=True, help="Push it to the running instance now.")
@pass_state
@api_errors
@rest("instances_config_partial_update")
def instances_config_set(state: State, instance_id: str, values: tuple[str, ...], apply: bool) -> None:
    """Change config keys (a JSON merge patch: VALUE is JSON when it parses, `KEY=null` removes)."""
    result = state.client().instances_config_partial_update(instance_id, body=pairs(values, "KEY=VALUE"), apply=True if apply else None)
    click.echo(json.dumps(result, indent=2))


# -- tasks ----------------------------------------------------------------------------------------

TASK_COLUMNS = ["task_id", "instance_id", "operation_code", "status", "exit_code", "created_at", "finished_at"]


@cli.group()
def tasks() -> None:
    """Tasks: run a script on an instance, follow it, read its result."""


@tasks.command(name="run")
@click.argument("instance_id")
@click.argument("script_path")
@click.option("--code", "operation_code", default="cli", show_default=True, help="The task's operation code.")
@click.option("--arg", "args", multiple=True, help="key=value for the script (JSON on stdin and --key value argv).")
@click.option("--timeout", "timeout_seconds", type=int, help="Seconds the task may run (1–3600).")
@click.option("--idempotency-key", help="Run at most once for this key on this instance.")
@click.option("--follow", "-f", is_flag=True, help="Stream its output until it ends; exit 13 unless it succeeded.")
@pass_state
@api_errors
@rest("instances_tasks_create")
def tasks_run(state: State, instance_id, script_path, operation_code, args, timeout_seconds, idempotency_key, follow: bool) -> None:
    """Run a script on the instance (202; one task at a time per instance)."""
    from ._base import UNSET

    client = state.client()
    task = client.instances_tasks_create(
        instance_id,
        operation_code=operation_code,
        script_path=script_path,
        script_args=pairs(args, "--arg") or UNSET,
        timeout_seconds=timeout_seconds or UNSET,
        idempotency_key=idempotency_key,
    )
    if not follow:
        emit(state, task)
        return
    follow_task(state, task["task_id"], limit=(timeout_seconds or 600) + 60)


def follow_task(state: State, task_id: str, limit: float) -> None:
    client = state.client()
    try:
        for stream, text in client.follow_task(task_id, timeout=limit, interval=0.5):
            if not state.json:
                click.echo(text, nl=False, err=stream == "stderr")
    except errors.OrchestrioError as exc:
        if isinstance(exc, errors.ApiError):
            raise
        raise Failure(str(exc), "timeout") from exc
    task = client.last_task
    if state.json:
        emit(state, task)
    else:
        progress(state, f"task {task_id}: {task['status']} (exit code {task['exit_code']})")
    if task["status"] != "succeeded":
        raise SystemExit(EXIT_CODES["task_failed"])


@tasks.command(name="get")
@click.argument("task_id")
@click.option("--follow", "-f", is_flag=True, help="Stream its output until it ends.")
@pass_state
@api_errors
@rest("tasks_retrieve")
def tasks_get(state: State, task_id: str, follow: bool) -> None:
    """A task: status, exit code, stdout and stderr (each the last 64 KiB)."""
    if follow:
        follow_task(state, task_id, limit=3700)
        return
    emit(state, state.client().tasks_retrieve(task_id))


@tasks.command(name="list")
@click.argument("instance_id")
@click.option("--status", help="Only tasks in this status.")
@click.option("--code", "operation_code", help="Only tasks of this operation code.")
@pass_state
@api_errors
@rest("instances_tasks_list")
def tasks_list(state: State, instance_id: str, status: str | None, operation_code: str | None) -> None:
    """The instance's tasks, newest first."""
    emit(state, list(state.client().instances_tasks_list(instance_id, status=status, operation_code=operation_code, limit=PAGE)), TASK_COLUMNS)


@tasks.command(name="cancel")
@click.argument("task_id")
@pass_state
@api_errors
@rest("tasks_cancel_create")
def tasks_cancel(state: State, task_id: str) -> None:
    """Cancel a queued or running task (202; a finished one: exit 8)."""
    emit(state, state.client().tasks_cancel_create(task_id))


# -- blueprints -----------------------------------------------------------------------------------


@cli.group()
def blueprints() -> None:
    """Blueprints: what an instance runs and how it is launched."""


@blueprints.command(name="list")
@pass_state
@api_errors
@rest("blueprints_list")
def blueprints_list(state: State) -> None:
    """The built-in and the tenant's blueprints."""
    emit(state, list(state.client().blueprints_list(limit=PAGE)), ["name", "provider_api", "instance_type", "health_path", "builtin", "description"])


@blueprints.command(name="get")
@click.argument("name")
@pass_state
@api_errors
@rest("blueprints_retrieve")
def blueprints_get(state: State, name: str) -> None:
    """One blueprint."""
    emit(state, state.client().blueprints_retrieve(name))


@blueprints.command(name="create")
@click.argument("file", type=click.Path(allow_dash=True))
@pass_state
@api_errors
@rest("blueprints_create")
def blueprints_create(state: State, file: str) -> None:
    """Create a blueprint from a JSON file (`-`: stdin)."""
    body = read_json(file)
    name = body.pop("name", None)
    if not name:
        raise Failure(f"{file}: the blueprint needs a name", "validation")
    emit(state, state.client().blueprints_create(name=name, body=body))


@blueprints.command(name="update")
@click.argument("name")
@click.argument("file", type=click.Path(allow_dash=True))
@pass_state
@api_errors
@rest("blueprints_partial_update")
def blueprints_update(state: State, name: str, file: str) -> None:
    """Change the fields the JSON file names (`-`: stdin)."""
    emit(state, state.client().blueprints_partial_update(name, body=read_json(file)))


@blueprints.command(name="delete")
@click.argument("name")
@pass_state
@api_errors
@rest("blueprints_destroy")
def blueprints_delete(state: State, name: str) -> None:
    """Delete a blueprint (in use by a live instance: exit 5)."""
    state.client().blueprints_destroy(name)
    emit(state, {"name": name, "deleted": True})


@blueprints.command(name="validate")
@click.argument("file", type=click.Path(allow_dash=True))
@pass_state
@api_errors
@rest("blueprints_validate_create")
def blueprints_validate(state: State, file: str) -> None:
    """Check a blueprint JSON file without saving it (exit 7 when it is not valid)."""
    result = state.client().blueprints_validate_create(body=read_json(file))
    emit(state, result)
    if not result.get("valid"):
        raise SystemExit(EXIT_CODES["validation"])


# -- gateway --------------------------------------------------------------------------------------


@cli.group()
def gateway() -> None:
    """The gateway: who may call an instance's webhooks and tunnel."""


@gateway.group(name="policies")
def gateway_policies() -> None:
    """Gateway policies of an instance."""


POLICY_COLUMNS = ["id", "instance_id", "slug", "provider", "enabled", "endpoint"]


def policy_fields(slug, provider, audience, issuer, allow, config_values, enabled) -> dict[str, Any]:
    body: dict[str, Any] = {}
    if slug is not None:
        body["slug"] = slug or None
    for key, value in (("provider", provider), ("audience", audience), ("issuer", issuer)):
        if value is not None:
            body[key] = value
    if allow is not None:
        try:
            body["allow"] = json.loads(allow)
        except ValueError as exc:
            raise click.BadParameter(f"not JSON: {exc}", param_hint="--allow") from exc
    if config_values:
        body["config"] = pairs(config_values, "--config")
    if enabled is not None:
        body["enabled"] = enabled
    return body


def policy_options(fn: Callable) -> Callable:
    for option in reversed([
        click.option("--slug", help="The webhook slug (empty: the catch-all policy)."),
        click.option("--provider", help="api-key, anonymous, github-oidc, gitlab-oidc, … (docs/gateway.md)."),
        click.option("--audience"),
        click.option("--issuer"),
        click.option("--allow", help='The allow rules as JSON, e.g. \'[{"repository": "acme/app"}]\'.'),
        click.option("--config", "config_values", multiple=True, help="key=value (repeatable)."),
        click.option("--enabled/--disabled", default=None),
    ]):
        fn = option(fn)
    return fn


@gateway_policies.command(name="list")
@click.argument("instance_id")
@pass_state
@api_errors
@rest("instances_gateway_policies_list")
def gateway_policies_list(state: State, instance_id: str) -> None:
    """The instance's gateway policies."""
    emit(state, list(state.client().instances_gateway_policies_list(instance_id, limit=PAGE)), POLICY_COLUMNS)


@gateway_policies.command(name="get")
@click.argument("policy_id")
@pass_state
@api_errors
@rest("gateway_policies_retrieve")
def gateway_policies_get(state: State, policy_id: str) -> None:
    """One gateway policy."""
    emit(state, state.client().gateway_policies_retrieve(policy_id))


@gateway_policies.command(name="create")
@click.argument("instance_id")
@policy_options
@pass_state
@api_errors
@rest("instances_gateway_policies_create")
def gateway_policies_create(state: State, instance_id: str, **options: Any) -> None:
    """Add a gateway policy to the instance (anonymous ones need the admin role)."""
    emit(state, state.client().instances_gateway_policies_create(instance_id, body=policy_fields(**options)))


@gateway_policies.command(name="update")
@click.argument("policy_id")
@policy_options
@pass_state
@api_errors
@rest("gateway_policies_partial_update")
def gateway_policies_update(state: State, policy_id: str, **options: Any) -> None:
    """Change the fields given."""
    emit(state, state.client().gateway_policies_partial_update(policy_id, body=policy_fields(**options)))


@gateway_policies.command(name="delete")
@click.argument("policy_id")
@pass_state
@api_errors
@rest("gateway_policies_destroy")
def gateway_policies_delete(state: State, policy_id: str) -> None:
    """Delete a gateway policy."""
    state.client().gateway_policies_destroy(policy_id)
    emit(state, {"id": policy_id, "deleted": True})


# -- domains --------------------------------------------------------------------------------------


@cli.group()
def domains() -> None:
    """An instance's custom domain."""


@domains.command(name="get")
@click.argument("instance_id")
@pass_state
@api_errors
@rest("instances_custom_domain_retrieve")
def domains_get(state: State, instance_id: str) -> None:
    """The custom domain, its status and the DNS records to create."""
    emit(state, state.client().instances_custom_domain_retrieve(instance_id))


@domains.command(name="add")
@click.argument("instance_id")
@click.argument("domain")
@pass_state
@api_errors
@rest("instances_custom_domain_create")
def domains_add(state: State, instance_id: str, domain: str) -> None:
    """Attach a custom domain (202; verified in the background)."""
    emit(state, state.client().instances_custom_domain_create(instance_id, domain=domain))


@domains.command(name="check")
@click.argument("instance_id")
@pass_state
@api_errors
@rest("instances_custom_domain_check_create")
def domains_check(state: State, instance_id: str) -> None:
    """Check the domain's DNS now."""
    emit(state, state.client().instances_custom_domain_check_create(instance_id))


@domains.command(name="remove")
@click.argument("instance_id")
@pass_state
@api_errors
@rest("instances_custom_domain_destroy")
def domains_remove(state: State, instance_id: str) -> None:
    """Detach the custom domain (202)."""
    emit(state, state.client().instances_custom_domain_destroy(instance_id))


# -- deployments ----------------------------------------------------------------------------------

DEPLOYMENT_BUSY = ("provisioning", "updating", "rolling_back", "deleting")
DEPLOYMENT_COLUMNS = ["id", "name", "environment", "status", "revision", "instance_id", "webhook_url"]


@cli.command()
@click.argument("name")
@click.option("--blueprint", help="Blueprint name (default: OpenClaw).")
@click.option("--env", "environment", type=click.Choice(["production", "staging", "development"]), help="Environment (default: production).")
@click.option("--region", help="Region (default: the installation's).")
@click.option("--plan", help="Instance plan.")
@click.option("--config", "config_values", multiple=True, help="key=value (repeatable; JSON values).")
@click.option("--secret", "secrets", multiple=True, help="KEY=value (repeatable; encrypted, never shown again).")
@click.option("--wait", "wait_", is_flag=True, help="Then wait until the deployment is live (or failed).")
@click.option("--timeout", default=300.0, show_default=True)
@pass_state
@api_errors
@rest("deployments_create")
def deploy(state: State, name, blueprint, environment, region, plan, config_values, secrets, wait_: bool, timeout: float) -> None:
    """Deploy a blueprint with config and secrets on a new instance (201, revision 1)."""
    from ._base import UNSET

    client = state.client()
    record = client.deployments_create(
        name=name,
        blueprint_name=blueprint or UNSET,
        environment=environment or UNSET,
        region=region or UNSET,
        plan_id=plan or UNSET,
        config=pairs(config_values, "--config") or UNSET,
        secrets=string_pairs(secrets, "--secret") or UNSET,
    )
    if wait_:
        record = wait_deployment(state, record["id"], timeout)
    emit(state, record)


def wait_deployment(state: State, deployment_id: str, timeout: float) -> dict:
    client = state.client()
    deadline = time.monotonic() + timeout
    last = None
    while True:
        record = client.deployments_retrieve(deployment_id)
        if record["status"] != last:
            progress(state, f"{record['name']}: {record['status']}")
            last = record["status"]
        if record["status"] not in DEPLOYMENT_BUSY:
            if record["status"] == "failed":
                raise Failure(f"deployment {record['name']} failed: {record.get('error')}", "server")
            return record
        if time.monotonic() >= deadline:
            raise Failure(f"timed out after {timeout:g}s; deployment {record['name']} is {record['status']}", "timeout")
        time.sleep(0.5)


@cli.group()
def deployments() -> None:
    """Deployments: list, get, update (a new revision), revisions, rollback, logs, delete."""


@deployments.command(name="list")
@pass_state
@api_errors
@rest("deployments_list")
def deployments_list(state: State) -> None:
    """The tenant's deployments."""
    emit(state, list(state.client().deployments_list(limit=PAGE)), DEPLOYMENT_COLUMNS)


@deployments.command(name="get")
@click.argument("deployment_id")
@pass_state
@api_errors
@rest("deployments_retrieve")
def deployments_get(state: State, deployment_id: str) -> None:
    """One deployment with its steps."""
    emit(state, state.client().deployments_retrieve(deployment_id))


@deployments.command(name="update")
@click.argument("deployment_id")
@click.option("--config", "config_values", multiple=True, help="key=value (repeatable; JSON values).")
@click.option("--secret", "secrets", multiple=True, help="KEY=value (repeatable).")
@click.option("--wait", "wait_", is_flag=True, help="Then wait until the new revision is applied.")
@click.option("--timeout", default=300.0, show_default=True)
@pass_state
@api_errors
@rest("deployments_partial_update")
def deployments_update(state: State, deployment_id: str, config_values, secrets, wait_: bool, timeout: float) -> None:
    """Change config or secrets: a new revision, applied to the instance (202)."""
    from ._base import UNSET

    if not (config_values or secrets):
        raise click.UsageError("give --config or --secret")
    record = state.client().deployments_partial_update(
        deployment_id, config=pairs(config_values, "--config") or UNSET, secrets=string_pairs(secrets, "--secret") or UNSET
    )
    if wait_:
        record = wait_deployment(state, deployment_id, timeout)
    emit(state, record)


@deployments.command(name="revisions")
@click.argument("deployment_id")
@pass_state
@api_errors
@rest("deployments_revisions_list")
def deployments_revisions(state: State, deployment_id: str) -> None:
    """The deployment's revisions."""
    emit(state, list(state.client().deployments_revisions_list(deployment_id, limit=PAGE)), ["number", "reason", "status", "healthy", "created_by", "created_at", "applied_at"])


@deployments.command(name="rollback")
@click.argument("deployment_id")
@click.argument("revision", type=int)
@click.option("--wait", "wait_", is_flag=True, help="Then wait until the rollback is applied.")
@click.option("--timeout", default=300.0, show_default=True)
@pass_state
@api_errors
@rest("deployments_rollback_create")
def deployments_rollback(state: State, deployment_id: str, revision: int, wait_: bool, timeout: float) -> None:
    """Roll back to an earlier revision (202)."""
    record = state.client().deployments_rollback_create(deployment_id, revision=revision)
    if wait_:
        record = wait_deployment(state, deployment_id, timeout)
    emit(state, record)


@deployments.command(name="logs")
@click.argument("deployment_id")
@pass_state
@api_errors
@rest("deployments_logs_list")
def deployments_logs(state: State, deployment_id: str) -> None:
    """The deployment's log."""
    emit(state, list(state.client().deployments_logs_list(deployment_id, limit=PAGE)))


@deployments.command(name="delete")
@click.argument("deployment_id")
@click.option("--confirm", help="The deployment's name (required for production deployments).")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@pass_state
@api_errors
@rest("deployments_destroy")
def deployments_delete(state: State, deployment_id: str, confirm: str | None, yes: bool) -> None:
    """Delete the deployment and destroy its instance (202)."""
    if not yes:
        click.confirm(f"Delete deployment {deployment_id} and destroy its instance?", abort=True, err=True)
    emit(state, state.client().deployments_destroy(deployment_id, confirm=confirm))


# -- add-ons ---------------------------------------------------------------------------------------

ADDON_COLUMNS = ["addon_id", "instance_id", "engine", "version", "plan", "status", "provider", "host", "port"]
BACKUP_COLUMNS = ["backup_id", "kind", "status", "storage", "size_bytes", "created_at", "expires_at", "error_message"]
ADDON_SETTLED = ("available", "error", "deleted")


@cli.group()
def addons() -> None:
    """Add-ons: a PostgreSQL or Redis server of an instance, with backups (docs/addons.md)."""


def wait_addon(state: State, addon_id: str, timeout: float, *, gone_ok: bool = False) -> dict | None:
    """Follow the add-on until its operation has ended (available, error; destroyed: gone)."""
    client = state.client()
    deadline, last = time.monotonic() + timeout, None
    while True:
        try:
            record = client.addons_retrieve(addon_id)
        except errors.NotFound:
            if gone_ok:
                progress(state, f"{addon_id}: destroyed")
                return None
            raise
        if record["status"] != last:
            progress(state, f"{addon_id}: {record['status']}")
            last = record["status"]
        if record["status"] in ADDON_SETTLED and not (gone_ok and record["status"] != "deleted"):
            if record["status"] == "error":
                emit(state, record)
                raise Failure(f"add-on {addon_id} failed: {record.get('error_message')}", "server")
            if record.get("error_message"):
                progress(state, f"{addon_id}: the last operation failed: {record['error_message']}")
            return record
        if time.monotonic() >= deadline:
            raise Failure(f"timed out after {timeout:g}s; add-on {addon_id} is {record['status']}", "timeout")
        time.sleep(0.5)


@addons.command(name="list")
@click.argument("instance_id")
@pass_state
@api_errors
@rest("instances_addons_list")
def addons_list(state: State, instance_id: str) -> None:
    """The instance's add-ons."""
    emit(state, list(state.client().instances_addons_list(instance_id, limit=PAGE)), ADDON_COLUMNS)


@addons.command(name="create")
@click.argument("instance_id")
@click.option("--engine", required=True, type=click.Choice(["postgres", "redis"]))
@click.option("--version", help="The engine's major version (default: what this installation provides).")
@click.option("--size", "plan", type=click.Choice(["hobby", "standard", "premium"]), help="The add-on's size (default hobby).")
@click.option("--wait", "wait_", is_flag=True, help="Wait until it is available.")
@click.option("--timeout", default=300.0, show_default=True, help="Seconds --wait waits.")
@pass_state
@api_errors
@rest("instances_addons_create")
def addons_create(state: State, instance_id: str, engine: str, version: str | None, plan: str | None, wait_: bool, timeout: float) -> None:
    """Add a database to the instance; its URL (owners and admins) is shown this once."""
    from ._base import UNSET

    record = state.client().instances_addons_create(instance_id, engine=engine, version=version or UNSET, plan=plan or UNSET)
    if wait_:
        record = {**wait_addon(state, record["addon_id"], timeout), "connection_url": record.get("connection_url")}
    emit(state, record)


@addons.command(name="get")
@click.argument("addon_id")
@pass_state
@api_errors
@rest("addons_retrieve")
def addons_get(state: State, addon_id: str) -> None:
    """One add-on (never its URL: `ork addons reveal`)."""
    emit(state, state.client().addons_retrieve(addon_id))


@addons.command(name="reveal")
@click.argument("addon_id")
@pass_state
@api_errors
@rest("addons_reveal_create")
def addons_reveal(state: State, addon_id: str) -> None:
    """The connection URL (owners and admins; audited)."""
    record = state.client().addons_reveal_create(addon_id)
    emit(state, record) if state.json else click.echo(record["connection_url"])


@addons.command(name="rotate")
@click.argument("addon_id")
@click.option("--wait", "wait_", is_flag=True, help="Wait until the new password is in force.")
@click.option("--timeout", default=300.0, show_default=True)
@pass_state
@api_errors
@rest("addons_rotate_credentials_create")
def addons_rotate(state: State, addon_id: str, wait_: bool, timeout: float) -> None:
    """A new password (the old one is refused once done; the instance gets the new URL)."""
    record = state.client().addons_rotate_credentials_create(addon_id)
    emit(state, wait_addon(state, addon_id, timeout) if wait_ else record)


@addons.command(name="destroy")
@click.argument("addon_id")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@click.option("--no-final-snapshot", is_flag=True, help="On AWS: delete without a final snapshot.")
@click.option("--wait", "wait_", is_flag=True, help="Wait until it is gone.")
@click.option("--timeout", default=300.0, show_default=True)
@pass_state
@api_errors
@rest("addons_destroy")
def addons_destroy(state: State, addon_id: str, yes: bool, no_final_snapshot: bool, wait_: bool, timeout: float) -> None:
    """Destroy the add-on and its data (202)."""
    if not yes:
        click.confirm(f"Destroy add-on {addon_id} and all its data?", abort=True, err=True)
    record = state.client().addons_destroy(addon_id, confirm=addon_id, final_snapshot=False if no_final_snapshot else None)
    if wait_:
        wait_addon(state, addon_id, timeout, gone_ok=True)
    emit(state, record)


@addons.command(name="backups")
@click.argument("addon_id")
@pass_state
@api_errors
@rest("addons_backups_list")
def addons_backups(state: State, addon_id: str) -> None:
    """The add-on's backups, newest first."""
    emit(state, list(state.client().addons_backups_list(addon_id, limit=PAGE)), BACKUP_COLUMNS)


@addons.command(name="backup")
@click.argument("addon_id")
@click.option("--wait", "wait_", is_flag=True, help="Wait until the backup is stored.")
@click.option("--timeout", default=600.0, show_default=True)
@pass_state
@api_errors
@rest("addons_backups_create")
def addons_backup(state: State, addon_id: str, wait_: bool, timeout: float) -> None:
    """Take a backup now (counted against the plan's daily quota)."""
    client = state.client()
    backup = client.addons_backups_create(addon_id)
    if wait_:
        wait_addon(state, addon_id, timeout)
        backup = next((b for b in client.addons_backups_list(addon_id, limit=PAGE) if b["backup_id"] == backup["backup_id"]), backup)
        if backup["status"] != "available":
            emit(state, backup)
            raise Failure(f"backup {backup['backup_id']} is {backup['status']}: {backup.get('error_message')}", "server")
    emit(state, backup)


@addons.command(name="download")
@click.argument("addon_id")
@click.argument("backup_id")
@click.option("--output", "output", type=click.Path(dir_okay=False, writable=True), help="Save the backup to this file (else print its URL).")
@pass_state
@api_errors
@rest("addons_backups_download_retrieve")
def addons_download(state: State, addon_id: str, backup_id: str, output: str | None) -> None:
    """A URL that downloads the backup for minutes (audited); with --output, the file itself."""
    link = state.client().addons_backups_download_retrieve(addon_id, backup_id)
    if output is None:
        emit(state, link) if state.json else click.echo(link["url"])
        return
    import httpx

    with httpx.stream("GET", link["url"], timeout=60, follow_redirects=True) as response:
        if response.status_code != 200:
            raise Failure(f"the download answered {response.status_code}: {response.read().decode(errors='replace')[:200]}", "server")
        with open(output, "wb") as out:
            for chunk in response.iter_bytes():
                out.write(chunk)
    progress(state, f"backup {backup_id} saved to {output}")


@addons.command(name="restore")
@click.argument("addon_id")
@click.argument("backup_id")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@click.option("--wait", "wait_", is_flag=True, help="Wait until the restore has ended.")
@click.option("--timeout", default=600.0, show_default=True)
@pass_state
@api_errors
@rest("addons_restore_create")
def addons_restore(state: State, addon_id: str, backup_id: str, yes: bool, wait_: bool, timeout: float) -> None:
    """Replace the add-on's data with the backup's; exit 10 when the restore failed."""
    if not yes:
        click.confirm(f"Replace the data of {addon_id} with backup {backup_id}?", abort=True, err=True)
    record = state.client().addons_restore_create(addon_id, backup_id=backup_id)
    if wait_:
        record = wait_addon(state, addon_id, timeout)
        if record.get("error_message"):
            emit(state, record)
            raise Failure(f"the restore of {addon_id} failed: {record['error_message']}", "server")
    emit(state, record)


@addons.command(name="auto-backup")
@click.argument("addon_id")
@click.argument("switch", type=click.Choice(["on", "off"]))
@pass_state
@api_errors
@rest("addons_auto_backup_create")
def addons_auto_backup(state: State, addon_id: str, switch: str) -> None:
    """Daily automatic backups on or off; prints the backup plan."""
    emit(state, state.client().addons_auto_backup_create(addon_id, enabled=switch == "on"))


@addons.command(name="backup-info")
@click.argument("addon_id")
@pass_state
@api_errors
@rest("addons_backup_info_retrieve")
def addons_backup_info(state: State, addon_id: str) -> None:
    """The backup plan: retention, daily quota, used today, next and last backup."""
    emit(state, state.client().addons_backup_info_retrieve(addon_id))


# -- functions -------------------------------------------------------------------------------------

FUNCTION_COLUMNS = ["function_id", "slug", "runtime", "auth_mode", "current_version", "running", "invocations", "url"]
VERSION_COLUMNS = ["number", "status", "runtime", "rolled_back_from", "start_ms", "created_at", "error_message"]


@cli.group()
def functions() -> None:
    """Functions: a handler with a public URL that scales to zero (docs/functions.md)."""


@functions.command(name="list")
@pass_state
@api_errors
@rest("functions_list")
def functions_list(state: State) -> None:
    """The tenant's functions."""
    emit(state, list(state.client().functions_list(limit=PAGE)), FUNCTION_COLUMNS)


@functions.command(name="get")
@click.argument("function_id")
@pass_state
@api_errors
@rest("functions_retrieve")
def functions_get(state: State, function_id: str) -> None:
    """One function: its draft code, settings, current version and counters."""
    emit(state, state.client().functions_retrieve(function_id))


@functions.command(name="create")
@click.argument("slug")
@click.option("--runtime", required=True, type=click.Choice(["python3.11", "node20"]))
@click.option("--file", "code_file", required=True, type=click.File("r"), help="The handler's source file (- for stdin).")
@click.option("--api-key", "api_key", is_flag=True, help="Require an API key (shown once).")
@click.option("--idle-timeout", type=int, help="Seconds without invocations before it scales to zero.")
@click.option("--env", "env", multiple=True, help="KEY=value (repeatable; encrypted at rest).")
@click.option("--deploy", "deploy_", is_flag=True, help="Then deploy it (and wait until it is live or failed).")
@click.option("--timeout", type=float, default=900, show_default=True, help="Seconds to wait for a deploy on a function instance.")
@pass_state
@api_errors
@rest("functions_create", "functions_deploy_create")
def functions_create(state: State, slug: str, runtime: str, code_file, api_key: bool, idle_timeout: int | None, env, deploy_: bool, timeout: float) -> None:
    """Create a function (its API key, with --api-key, is shown once)."""
    from ._base import UNSET

    client = state.client()
    record = client.functions_create(
        slug=slug, runtime=runtime, code=code_file.read(), auth_mode="api_key" if api_key else "none",
        idle_timeout_seconds=idle_timeout if idle_timeout is not None else UNSET, env=string_pairs(env, "--env") or UNSET,
    )  # fmt: skip
    if deploy_:
        version = wait_function_version(state, record["function_id"], client.functions_deploy_create(record["function_id"]), timeout)
        record = {**client.functions_retrieve(record["function_id"]), "api_key": record.get("api_key"), "deployed_version": version}
        if version["status"] != "built":
            emit(state, record)
            raise Failure(f"the deploy failed: {version['error_message']}")
    emit(state, record)


@functions.command(name="deploy")
@click.argument("function_id")
@click.option("--file", "code_file", type=click.File("r"), help="Replace the draft's code with this file first.")
@click.option("--version", "version", type=int, help="Roll back: deploy this earlier version again.")
@click.option("--timeout", type=float, default=900, show_default=True, help="Seconds to wait for a deploy on a function instance.")
@pass_state
@api_errors
@rest("functions_deploy_create", "functions_partial_update", "functions_versions_list")
def functions_deploy(state: State, function_id: str, code_file, version: int | None, timeout: float) -> None:
    """Deploy the draft as a new version (traffic switches once it is healthy) and wait for it;
    exit 1 when it fails."""
    from ._base import UNSET

    client = state.client()
    if code_file is not None:
        client.functions_partial_update(function_id, code=code_file.read())
    built = wait_function_version(state, function_id, client.functions_deploy_create(function_id, version=version if version is not None else UNSET), timeout)
    emit(state, built)
    if built["status"] != "built":
        raise Failure(f"version {built['number']} failed to deploy; the previous version keeps serving")


def wait_function_version(state: State, function_id: str, version: dict, timeout: float) -> dict:
    """A deploy on a function instance answers `building` and finishes in a job: follow it."""
    client = state.client()
    deadline = time.monotonic() + timeout
    if version["status"] == "building":
        progress(state, f"version {version['number']}: building on the function instance (its machine may be starting)")
    while version["status"] == "building":
        if time.monotonic() >= deadline:
            raise Failure(f"timed out after {timeout:g}s; version {version['number']} is still building", "timeout")
        time.sleep(1.0)
        found = [v for v in client.functions_versions_list(function_id, limit=PAGE) if v["number"] == version["number"]]
        version = found[0] if found else version
    return version


@functions.command(name="versions")
@click.argument("function_id")
@pass_state
@api_errors
@rest("functions_versions_list")
def functions_versions(state: State, function_id: str) -> None:
    """The function's versions, newest first."""
    emit(state, list(state.client().functions_versions_list(function_id, limit=PAGE)), VERSION_COLUMNS)


@functions.command(name="invoke")
@click.argument("function_id")
@click.option("--method", default="GET", show_default=True)
@click.option("--path", "path", default="/", show_default=True)
@click.option("--header", "headers", multiple=True, help="name=value (repeatable).")
@click.option("--body", default="", help="The request body (text).")
@pass_state
@api_errors
@rest("functions_invoke_create")
def functions_invoke(state: State, function_id: str, method: str, path: str, headers, body: str) -> None:
    """Invoke the current version with a sample request (counts as an execution)."""
    sample = {"method": method.upper(), "path": path, "headers": string_pairs(headers, "--header"), "body": body}
    emit(state, state.client().functions_invoke_create(function_id, request=sample))


@functions.command(name="logs")
@click.argument("function_id")
@click.option("--tail", default=200, show_default=True)
@pass_state
@api_errors
@rest("functions_logs_retrieve")
def functions_logs(state: State, function_id: str, tail: int) -> None:
    """The function's logs, newest last."""
    logs = state.client().functions_logs_retrieve(function_id, tail=tail)
    if state.json:
        emit(state, logs)
    else:
        for line in logs["lines"]:
            click.echo(line)


@functions.command(name="rotate-key")
@click.argument("function_id")
@pass_state
@api_errors
@rest("functions_rotate_api_key_create")
def functions_rotate_key(state: State, function_id: str) -> None:
    """A new API key (shown once); the old one is refused from now on."""
    emit(state, state.client().functions_rotate_api_key_create(function_id))


@functions.command(name="delete")
@click.argument("function_id")
@click.option("--yes", is_flag=True, help="Do not ask.")
@pass_state
@api_errors
@rest("functions_destroy")
def functions_delete(state: State, function_id: str, yes: bool) -> None:
    """Delete the function, its versions and logs."""
    if not yes:
        click.confirm(f"Delete function {function_id}?", abort=True, err=True)
    state.client().functions_destroy(function_id)
    progress(state, f"function {function_id} deleted")


# -- fleet requests and tenant operations ---------------------------------------------------------

REQUEST_COLUMNS = ["request_id", "kind", "status", "count", "succeeded", "failed", "instance_id_prefix", "created_at"]
REQUEST_FINISHED = ("complete", "partial", "failed")


@cli.group()
def requests() -> None:
    """Fleet requests: create or return many instances in one call (docs/fleet.md)."""


def wait_request(state: State, request_id: str, timeout: float) -> dict:
    client = state.client()
    deadline = time.monotonic() + timeout
    last = None
    while True:
        record = client.requests_retrieve(request_id)
        shown = (record["status"], record.get("succeeded"), record.get("failed"))
        if shown != last:
            progress(state, f"{request_id}: {record['status']} ({record.get('succeeded', 0)} of {record.get('count')} succeeded, {record.get('failed', 0)} failed)")
            last = shown
        if record["status"] in REQUEST_FINISHED:
            if record["status"] != "complete":
                emit(state, record)
                raise Failure(f"request {request_id} is {record['status']}: see each instance's reason", "server")
            return record
        if time.monotonic() >= deadline:
            raise Failure(f"timed out after {timeout:g}s; request {request_id} is {record['status']}", "timeout")
        time.sleep(0.5)


@requests.command(name="create")
@click.option("--count", type=int, required=True, help="How many instances (1–100 by default).")
@click.option("--blueprint", help="Blueprint name (default: OpenClaw).")
@click.option("--plan", help="Instance plan.")
@click.option("--region", help="Region.")
@click.option("--prefix", "instance_id_prefix", help="Instance ids are <prefix>-1 … <prefix>-<count> (default: the request's id).")
@click.option("--label", "labels", multiple=True, help="key=value (repeatable).")
@click.option("--idempotency-key", help="Your own Idempotency-Key: a retry creates nothing more.")
@click.option("--wait", "wait_", is_flag=True, help="Then wait until every instance is up (exit 10 if some failed).")
@click.option("--timeout", default=600.0, show_default=True)
@pass_state
@api_errors
@rest("requests_create")
def requests_create(state: State, count: int, blueprint, plan, region, instance_id_prefix, labels, idempotency_key, wait_: bool, timeout: float) -> None:
    """Acquire `count` instances in one transaction (202): all or nothing."""
    from ._base import UNSET

    record = state.client().requests_create(
        count=count, blueprint_name=blueprint or UNSET, plan_id=plan or UNSET, region=region or UNSET,
        instance_id_prefix=instance_id_prefix or UNSET, labels=string_pairs(labels, "--label") or UNSET,
        idempotency_key=idempotency_key,
    )
    if wait_:
        record = wait_request(state, record["request_id"], timeout)
    emit(state, record)


@requests.command(name="list")
@click.option("--status", "statuses", multiple=True, help="pending, in_progress, complete, partial, failed (repeatable).")
@click.option("--kind", type=click.Choice(["acquire", "return"]))
@pass_state
@api_errors
@rest("requests_list")
def requests_list(state: State, statuses: tuple[str, ...], kind: str | None) -> None:
    """The tenant's fleet requests, newest first."""
    emit(state, list(state.client().requests_list(status=list(statuses) or None, kind=kind, limit=PAGE)), REQUEST_COLUMNS)


@requests.command(name="get")
@click.argument("request_id")
@click.option("--wait", "wait_", is_flag=True, help="Wait until it has finished.")
@click.option("--timeout", default=600.0, show_default=True)
@pass_state
@api_errors
@rest("requests_retrieve")
def requests_get(state: State, request_id: str, wait_: bool, timeout: float) -> None:
    """A request with each instance, its operation and why it failed."""
    emit(state, wait_request(state, request_id, timeout) if wait_ else state.client().requests_retrieve(request_id))


@requests.command(name="return")
@click.argument("request_id", required=False)
@click.option("--instance", "instance_ids", multiple=True, help="Return these instances instead (repeatable).")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@click.option("--wait", "wait_", is_flag=True, help="Then wait until every one is destroyed.")
@click.option("--timeout", default=600.0, show_default=True)
@pass_state
@api_errors
@rest("requests_return", "requests_return_instances")
def requests_return(state: State, request_id: str | None, instance_ids: tuple[str, ...], yes: bool, wait_: bool, timeout: float) -> None:
    """Return (destroy) an acquire request's live instances, or the --instance ones, as one request (202)."""
    if bool(request_id) == bool(instance_ids):
        raise click.UsageError("give a REQUEST_ID or --instance IDs (not both)")
    what = request_id or ", ".join(instance_ids)
    if not yes:
        click.confirm(f"Destroy the instances of {what}? This cannot be undone", abort=True, err=True)
    client = state.client()
    record = client.requests_return(request_id) if request_id else client.requests_return_instances(instance_ids=list(instance_ids))
    if wait_:
        record = wait_request(state, record["request_id"], timeout)
    emit(state, record)


@cli.group()
def operations() -> None:
    """The tenant's operations across its instances."""


@operations.command(name="list")
@click.option("--instance", "instance_id", help="Only this instance's.")
@click.option("--status", "statuses", multiple=True, help="queued, running, succeeded, failed (repeatable).")
@click.option("--kind", "kinds", multiple=True, help="create, stop, start, … (repeatable).")
@click.option("--limit", "max_rows", type=int, default=50, show_default=True, help="At most this many (0: all).")
@pass_state
@api_errors
@rest("operations_list")
def operations_list(state: State, instance_id, statuses, kinds, max_rows: int) -> None:
    """Operations, newest first."""
    rows = []
    for op in state.client().operations_list(instance_id=instance_id, status=list(statuses) or None, kind=list(kinds) or None, limit=min(max_rows, 200) if max_rows else PAGE):
        rows.append(op)
        if max_rows and len(rows) >= max_rows:
            break
    emit(state, rows, ["id", "instance_id", "kind", "status", "requested_by", "created_at", "finished_at", "error_code"])


@operations.command(name="get")
@click.argument("operation_id")
@pass_state
@api_errors
@rest("operations_retrieve")
def operations_get(state: State, operation_id: str) -> None:
    """One operation."""
    emit(state, state.client().operations_retrieve(operation_id))


# -- tenant, usage, tokens, activity, catalogue ---------------------------------------------------


@cli.command()
@pass_state
@api_errors
@rest("usage_current_retrieve")
def usage(state: State) -> None:
    """This billing period's executions, quota and instance hours."""
    emit(state, state.client().usage_current_retrieve())


@cli.command()
@pass_state
@api_errors
@rest("tenant_retrieve")
def tenant(state: State) -> None:
    """The token's tenant: plan, limits, usage."""
    emit(state, state.client().tenant_retrieve())


@cli.command()
@click.option("--action", help="Only this action.")
@click.option("--since", help="ISO 8601 time.")
@click.option("--limit", "max_rows", type=int, default=50, show_default=True, help="At most this many events (0: all).")
@pass_state
@api_errors
@rest("activity_list")
def activity(state: State, action: str | None, since: str | None, max_rows: int) -> None:
    """The tenant's audit log, newest first."""
    rows = []
    for event in state.client().activity_list(action=action, since=since, limit=min(max_rows, 200) if max_rows else None):
        rows.append(event)
        if max_rows and len(rows) >= max_rows:
            break
    emit(state, rows, ["created_at", "action", "object_type", "object_id", "actor", "ip"])


@cli.group()
def notifications() -> None:
    """Your notifications in the tenant: what the console's bell counts."""


@notifications.command(name="list")
@click.option("--unread", "unread_only", is_flag=True, help="Only the unread ones.")
@pass_state
@api_errors
@rest("notifications_list")
def notifications_list(state: State, unread_only: bool) -> None:
    """Your 50 most recent notifications, newest first, and how many are unread."""
    feed = state.client().notifications_list()
    if unread_only:
        feed = {**feed, "results": [n for n in feed["results"] if n["read_at"] is None]}
    if state.json:
        emit(state, feed)
        return
    click.echo(f"{feed['unread']} unread")
    if feed["results"]:
        click.echo(table(feed["results"], ["id", "created_at", "event", "title", "read_at"]))


@notifications.command(name="read")
@click.argument("notification_id", type=int)
@pass_state
@api_errors
@rest("notifications_read_create")
def notifications_read(state: State, notification_id: int) -> None:
    """Mark one notification read."""
    emit(state, state.client().notifications_read_create(notification_id))


@notifications.command(name="read-all")
@pass_state
@api_errors
@rest("notifications_read_all_create")
def notifications_read_all(state: State) -> None:
    """Mark all your notifications read."""
    emit(state, state.client().notifications_read_all_create())


@cli.command()
@pass_state
@api_errors
@rest("plans_list")
def plans(state: State) -> None:
    """The instance plans and subscription plans."""
    data = state.client().plans_list()
    if state.json:
        emit(state, data)
    else:
        click.echo(table(data["instance_plans"], ["plan_id", "instance_type", "vcpus", "memory_mib", "price_per_hour"]))


@cli.command()
@pass_state
@api_errors
@rest("regions_list")
def regions(state: State) -> None:
    """The regions."""
    emit(state, list(state.client().regions_list(limit=PAGE)), ["id", "name", "provider", "available"])


@cli.group()
def tokens() -> None:
    """API tokens of the tenant."""


@tokens.command(name="list")
@pass_state
@api_errors
@rest("api_tokens_list")
def tokens_list(state: State) -> None:
    """The tenant's tokens (never their secrets)."""
    emit(state, list(state.client().api_tokens_list(limit=PAGE)), ["id", "name", "prefix", "mode", "role", "instance_id", "expires_at", "last_used_at", "revoked_at"])


@tokens.command(name="create")
@click.argument("name")
@click.option("--mode", type=click.Choice(["live", "test"]), help="live (default) or test.")
@click.option("--expires-in-days", type=click.Choice(["30", "90", "180", "365"]), help="Default: never.")
@click.option("--instance", "instance_id", help="Scope the token to one instance.")
@pass_state
@api_errors
@rest("api_tokens_create")
def tokens_create(state: State, name: str, mode, expires_in_days, instance_id) -> None:
    """Create a token; its secret is printed this once."""
    from ._base import UNSET

    emit(state, state.client().api_tokens_create(
        name=name, mode=mode or UNSET, expires_in_days=int(expires_in_days) if expires_in_days else UNSET, instance_id=instance_id or UNSET
    ))


@tokens.command(name="revoke")
@click.argument("token_id")
@pass_state
@api_errors
@rest("api_tokens_destroy")
def tokens_revoke(state: State, token_id: str) -> None:
    """Revoke a token: it fails with 401 from the next request on."""
    state.client().api_tokens_destroy(token_id)
    emit(state, {"id": token_id, "revoked": True})


@cli.command(name="mcp")
@click.option("--http", "http_", is_flag=True, help="Serve streamable HTTP instead of stdio.")
@click.option("--host", default="127.0.0.1", show_default=True, help="With --http: the address to listen on.")
@click.option("--port", default=8765, show_default=True, help="With --http: the port.")
@pass_state
def mcp(state: State, http_: bool, host: str, port: int) -> None:
    """The MCP server for AI agents (stdio; --http for streamable HTTP), calling the API with
    your token through the SDK. Needs the `mcp` extra: pip install "./client[mcp]"."""
    try:
        from .mcp_server import serve
    except ImportError as exc:
        raise Failure(f"the MCP server needs the mcp package: pip install 'orchestrio-client[mcp]' ({exc})") from exc
    serve(state.client(), http=http_, host=host, port=port)


def _output_everywhere(group: click.Group) -> None:
    """`-o json` after the command too (`ork instances list -o json`), as before it."""

    def set_output(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
        if value:
            ctx.ensure_object(State).output = value

    for command in group.commands.values():
        if isinstance(command, click.Group):
            _output_everywhere(command)
        elif not any(param.name == "output" for param in command.params):
            command.params.append(click.Option(["-o", "--output"], type=click.Choice(["table", "json"]), expose_value=False, callback=set_output, is_eager=True, help="Human tables, or JSON for scripts."))


_output_everywhere(cli)


if __name__ == "__main__":
    sys.exit(main())


__all__ = ["EXIT_CODES", "FINISHED_TASK_STATUSES", "cli", "main"]
