"""Redis URLs: the one parser the API, the workers, the tests and the tools share.

``BRIDGE_REDIS_URL`` takes one of these forms::

    redis://[[user]:password@]host[:port][/db]             one server (port 6379)
    rediss://...                                           the same over TLS
    unix://[[user]:password@]/path/to/redis.sock[?db=N]    a local socket
    redis+sentinel://[[user]:password@]host[:port][,host[:port]...]/service[/db]
    rediss+sentinel://...                                  Sentinel and servers over TLS

In the Sentinel form every ``host:port`` is a Sentinel (port 26379), ``service`` is the name the
Sentinels monitor (``mymaster`` in most charts) and the credentials are those of the Redis
servers. Sentinels that need a password of their own take ``?sentinel_password=...`` (and
``sentinel_username=...``). Redis Cluster is not supported: arq's queue operations touch several
keys in one MULTI and our Lua scripts update several keys at once, which Cluster refuses unless
every key shares one hash slot.

:func:`connect` builds the client both the API and the workers use (an arq ``ArqRedis``, which is a
``redis.asyncio.Redis``); connection errors are retried with back-off, so a failover or a Redis
restart costs a few seconds of waiting, not a crash. :func:`arq_settings` gives arq's own
``RedisSettings`` for ``arq --check``.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Iterable
from typing import Any, Final
from urllib.parse import parse_qs, quote, unquote, urlsplit

from arq.connections import ArqRedis, RedisSettings
from redis._parsers import _AsyncHiredisParser
from redis._parsers.hiredis import NOT_ENOUGH_DATA
from redis._parsers.socket import SERVER_CLOSED_CONNECTION_ERROR
from redis.asyncio import ConnectionPool
from redis.asyncio.connection import AbstractConnection, DefaultParser
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.utils import HIREDIS_AVAILABLE

from bridge.core.codec import deserialize_job, serialize_job
from bridge.core.retry import exponential
from bridge.store import keys

DIRECT_SCHEMES: Final = ("redis", "rediss", "unix")
SENTINEL_SCHEMES: Final = ("redis+sentinel", "rediss+sentinel")
SCHEMES: Final = DIRECT_SCHEMES + SENTINEL_SCHEMES
DEFAULT_PORT: Final = 6379
DEFAULT_SENTINEL_PORT: Final = 26379

SOCKET_TIMEOUT_S: Final = 5.0
"""A command that has not answered after this long fails (and is retried): a hung server is an error."""
CONNECT_TIMEOUT_S: Final = 2.0
RETRIES: Final = 3
"""Retries on a connection error, with the back-off below (0.2, 0.4, 0.8 s). redis-py applies them
twice over: to the command, and inside each command attempt to establishing the connection; so a
command against a Redis that refuses connections fails after about 7 s, and one against a demoted
master (after a Sentinel failover) reaches the new one on its first retry. Longer outages are the
callers' business: the poll loop and arq's job loop wait and retry, the API answers 503."""
BACKOFF_BASE_S: Final = 0.1
BACKOFF_CAP_S: Final = 1.0
OUTAGE_WAIT_BASE_S: Final = 0.2
OUTAGE_WAIT_MAX_S: Final = 5.0
REDIS_PY_VERSION: Final = "5.3.1"
"""The redis-py release whose parser :class:`PromptHiredisParser` extends (a test fails when another
one is installed)."""
"""A loop that found Redis gone (the poll loop, the worker's job loop, a worker starting) tries
again after 0.2, 0.4, 0.8 ... s, then every 5 s: a failover is noticed within seconds, an outage
costs one attempt every few seconds."""
MASKED: Final = "****"


class RedisUrlError(ValueError):
    """The URL cannot be used; the message never contains its password."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class RedisTarget:
    """A parsed ``BRIDGE_REDIS_URL``. ``repr`` hides the passwords."""

    url: str = dataclasses.field(repr=False)
    sentinel: bool
    hosts: tuple[tuple[str, int], ...]
    """The server (one entry) or the Sentinels; empty for a Unix socket."""
    service: str | None = None
    db: int = 0
    ssl: bool = False
    unix_path: str | None = None
    username: str | None = None
    password: str | None = dataclasses.field(default=None, repr=False)
    sentinel_username: str | None = None
    sentinel_password: str | None = dataclasses.field(default=None, repr=False)

    def redacted(self) -> str:
        """The URL with every password replaced by ``****``: safe to log."""
        text = self.url
        for secret in (self.password, self.sentinel_password):
            if secret:
                text = text.replace(quote(secret, safe=""), MASKED).replace(secret, MASKED)
        return text


def outage_wait_s(failures: int) -> float:
    """How long to wait before trying Redis again after ``failures`` failures in a row."""
    return exponential(failures, base_s=OUTAGE_WAIT_BASE_S, cap_s=OUTAGE_WAIT_MAX_S)


def parse_redis_url(url: str) -> RedisTarget:
    """Parse one of the forms in the module docstring; :class:`RedisUrlError` otherwise."""
    scheme, sep, _ = url.partition("://")
    if not sep or scheme not in SCHEMES:
        raise RedisUrlError(f"expected a {'/'.join(SCHEMES)} URL, got {_shown(url)!r}")
    if scheme in SENTINEL_SCHEMES:
        return _parse_sentinel(url, scheme)
    return _parse_direct(url, scheme)


def _parse_direct(url: str, scheme: str) -> RedisTarget:
    parts = urlsplit(url)
    query = parse_qs(parts.query)
    try:
        port = parts.port
    except ValueError:
        raise RedisUrlError(f"bad port in {_shown(url)!r}") from None
    if scheme == "unix":
        if not parts.path:
            raise RedisUrlError(f"a unix:// URL needs a socket path, got {_shown(url)!r}")
        return RedisTarget(
            url=url,
            sentinel=False,
            hosts=(),
            unix_path=unquote(parts.path),
            db=_db(query.get("db", ["0"])[0], url),
            username=_unquoted(parts.username),
            password=_unquoted(parts.password),
        )
    if not parts.hostname:
        raise RedisUrlError(f"no host in {_shown(url)!r}")
    db_text = query.get("db", [parts.path.strip("/") or "0"])[0]
    return RedisTarget(
        url=url,
        sentinel=False,
        hosts=((parts.hostname, port or DEFAULT_PORT),),
        db=_db(db_text, url),
        ssl=scheme == "rediss",
        username=_unquoted(parts.username),
        password=_unquoted(parts.password),
    )


def _parse_sentinel(url: str, scheme: str) -> RedisTarget:
    rest = url.split("://", 1)[1]
    rest, _, query_text = rest.partition("?")
    netloc, _, path = rest.partition("/")
    userinfo, at, hostlist = netloc.rpartition("@")
    if not at:
        userinfo, hostlist = "", netloc
    username, _, password = userinfo.partition(":")
    hosts = tuple(_host_port(item, url) for item in hostlist.split(",") if item)
    if not hosts:
        raise RedisUrlError(f"no Sentinel host in {_shown(url)!r}")
    segments = [s for s in path.split("/") if s]
    if not segments or len(segments) > 2:
        raise RedisUrlError(f"expected .../<service>[/<db>] after the Sentinel hosts, got {_shown(url)!r}")
    query = parse_qs(query_text)
    unknown = set(query) - {"sentinel_password", "sentinel_username"}
    if unknown:
        raise RedisUrlError(f"unknown option(s) {', '.join(sorted(unknown))} in {_shown(url)!r}")
    return RedisTarget(
        url=url,
        sentinel=True,
        hosts=hosts,
        service=unquote(segments[0]),
        db=_db(segments[1] if len(segments) == 2 else "0", url),
        ssl=scheme == "rediss+sentinel",
        username=unquote(username) or None,
        password=unquote(password) or None,
        sentinel_username=query.get("sentinel_username", [None])[0],
        sentinel_password=query.get("sentinel_password", [None])[0],
    )


def _host_port(item: str, url: str) -> tuple[str, int]:
    if item.startswith("["):  # [v6]:port
        host, _, tail = item[1:].partition("]")
        port_text = tail.removeprefix(":")
    else:
        host, _, port_text = item.partition(":")
    if not host:
        raise RedisUrlError(f"empty host in {_shown(url)!r}")
    if not port_text:
        return host, DEFAULT_SENTINEL_PORT
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise RedisUrlError(f"bad port {port_text!r} in {_shown(url)!r}")
    return host, int(port_text)


def _db(text: str, url: str) -> int:
    if not text.isdigit():
        raise RedisUrlError(f"the database must be a number, got {text!r} in {_shown(url)!r}")
    return int(text)


def _unquoted(value: str | None) -> str | None:
    return unquote(value) if value else None


def _shown(url: str) -> str:
    """``url`` without whatever sits between ``://`` and ``@`` (credentials), nor its query."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url if "@" not in url else MASKED
    rest = rest.split("?", 1)[0]
    if "@" in rest:
        rest = MASKED + "@" + rest.rsplit("@", 1)[1]
    return f"{scheme}://{rest}"


# ---------------------------------------------------------------------------- clients


class PromptHiredisParser(_AsyncHiredisParser):
    """redis-py's hiredis parser, whose check of a pooled connection before each command does not
    wait a turn of the event loop.

    The pool checks that a connection it hands out has nothing left to read (a reply nobody read,
    or the server's close). redis-py's hiredis parser reads the socket for that under a zero
    timeout, which costs every command a whole turn of the loop, a cancelled read and a caught
    exception (and holds the pool's lock meanwhile): a sizeable part of a quiet worker's CPU. What
    the socket delivered is already in the connection's stream buffer (the event loop moves it
    there as it arrives), so looking at that buffer answers the same question at once. The
    pure-Python parser already checks this way.
    """

    async def can_read_destructive(self) -> bool:
        if not self._connected:
            raise RedisConnectionError(SERVER_CLOSED_CONNECTION_ERROR)
        reader: Any = self._reader
        if reader.gets() is not NOT_ENOUGH_DATA:
            return True
        stream: Any = self._stream  # an asyncio.StreamReader, whose buffer has no public peek
        if stream is None or stream.at_eof() or stream.exception() is not None:
            raise RedisConnectionError(SERVER_CLOSED_CONNECTION_ERROR)
        return bool(stream._buffer)

    def buffered_reply(self, disable_decoding: bool = False) -> Any:
        """The next reply if the parser holds all of it already, else ``NOT_ENOUGH_DATA``; raises
        what :meth:`read_response` would raise for it."""
        if not self._connected:
            raise RedisConnectionError(SERVER_CLOSED_CONNECTION_ERROR)
        reader: Any = self._reader
        response = reader.gets(False) if disable_decoding else reader.gets()
        if isinstance(response, RedisConnectionError):
            raise response
        if isinstance(response, list) and response and isinstance(response[0], RedisConnectionError):
            raise response[0]
        return response


PARSER_CLASS: Final = PromptHiredisParser if HIREDIS_AVAILABLE else DefaultParser


class PromptSend:
    """A connection (mixed into redis-py's own classes) that sends a command without a task, and
    reads a reply already at hand without a timer.

    With a socket timeout, redis-py sends every command under ``asyncio.wait_for``: a task made
    and started for the write, a timer, and a turn of the loop before the command leaves. Yet the
    write almost never waits: the transport hands the bytes to the socket at once, and the timeout
    only matters while they sit in its buffer. So the command is written straight away, and only
    when some of it is still buffered is the buffer drained under the socket timeout, as redis-py
    does; errors end the connection with the same exceptions.

    The drain runs under ``asyncio.timeout``, not ``asyncio.wait_for``: on Python 3.11, ``wait_for``
    returns normally when the task awaiting it was cancelled in the turn its inner write ended, so
    the cancellation is lost. With redis-py's own send, a worker's job loop cancelled at the end of
    its drain now and then ran on until the stop watchdog ended the process (exit code 75).
    """

    async def send_packed_command(
        self, command: bytes | str | Iterable[bytes], check_health: bool = True
    ) -> None:
        connection: Any = self
        if not connection.is_connected:
            await connection.connect()
        elif check_health:
            await connection.check_health()
        try:
            if isinstance(command, str):
                command = command.encode()
            if isinstance(command, bytes):
                command = [command]
            writer = connection._writer
            writer.writelines(command)
            transport = writer.transport
            if transport.get_write_buffer_size() or transport.is_closing():
                async with asyncio.timeout(connection.socket_timeout):
                    await writer.drain()
        except TimeoutError:
            await connection.disconnect(nowait=True)
            raise RedisTimeoutError("Timeout writing to socket") from None
        except OSError as e:
            await connection.disconnect(nowait=True)
            err_no, errmsg = ("UNKNOWN", e.args[0]) if len(e.args) == 1 else (e.args[0], e.args[1])
            raise RedisConnectionError(f"Error {err_no} while writing to socket. {errmsg}.") from e
        except BaseException:
            await connection.disconnect(nowait=True)
            raise

    async def read_response(
        self,
        disable_decoding: bool = False,
        timeout: float | None = None,  # noqa: ASYNC109 - redis-py's signature
        *,
        disconnect_on_error: bool = True,
        push_request: bool | None = False,
    ) -> Any:
        """A reply the parser holds already (the rest of a pipeline's, mostly: one read brings them
        all) is returned without the timer redis-py sets around every read; any other is read
        as redis-py does, under the socket timeout."""
        connection: Any = self
        parser = connection._parser
        if timeout is None and isinstance(parser, PromptHiredisParser):
            try:
                response = parser.buffered_reply(disable_decoding)
            except BaseException:
                if disconnect_on_error:
                    await connection.disconnect(nowait=True)
                raise
            if response is not NOT_ENOUGH_DATA:
                if connection.health_check_interval:
                    loop = asyncio.get_running_loop()
                    connection.next_health_check = loop.time() + connection.health_check_interval
                if isinstance(response, ResponseError):
                    raise response from None
                return response
        base: Any = super()
        return await base.read_response(
            disable_decoding, timeout, disconnect_on_error=disconnect_on_error, push_request=push_request
        )


_prompt_classes: dict[type[AbstractConnection], type[AbstractConnection]] = {}


def prompt_connection_class(base: type[AbstractConnection]) -> type[AbstractConnection]:
    """``base`` (redis-py's TCP, TLS, Unix socket or Sentinel-managed connection) sending as
    :class:`PromptSend` does (one class per base)."""
    if issubclass(base, PromptSend):
        return base
    made = _prompt_classes.get(base)
    if made is None:
        made = _prompt_classes[base] = type(f"Prompt{base.__name__}", (PromptSend, base), {})
    return made


def retry_policy() -> Retry:
    return Retry(ExponentialBackoff(cap=BACKOFF_CAP_S, base=BACKOFF_BASE_S), RETRIES)


def _connection_kwargs(target: RedisTarget) -> dict[str, Any]:
    # No `health_check_interval`: a dead pooled connection fails its next command, which the retry
    # policy repeats on a fresh one; and redis-py 5.3 loops forever when that health check meets
    # an error while connecting (a wrong password, say) under a retry policy.
    return {
        "socket_timeout": SOCKET_TIMEOUT_S,
        "socket_connect_timeout": CONNECT_TIMEOUT_S,
        "retry": retry_policy(),
        "retry_on_error": [RedisConnectionError, RedisTimeoutError, OSError],
        "parser_class": PARSER_CLASS,
        "username": target.username,
        "password": target.password,
        "db": target.db,
    }


class SentinelArqRedis(ArqRedis):
    """An ``ArqRedis`` on the master a Sentinel group names; closing it closes the Sentinel links too."""

    sentinel_manager: Sentinel | None = None

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        await super().aclose(close_connection_pool)
        if self.sentinel_manager is not None:
            for client in self.sentinel_manager.sentinels:
                await client.aclose()


def connect(target: RedisTarget | str) -> ArqRedis:
    """The client for ``target``: lazy (nothing connects before the first command), retrying on
    connection errors, with arq's msgspec job codec and our queue as its defaults."""
    if isinstance(target, str):
        target = parse_redis_url(target)
    kwargs = _connection_kwargs(target)
    client: ArqRedis
    if target.sentinel:
        sentinel_kwargs: dict[str, Any] = {
            "socket_timeout": SOCKET_TIMEOUT_S,
            "socket_connect_timeout": CONNECT_TIMEOUT_S,
            "username": target.sentinel_username,
            "password": target.sentinel_password,
            "ssl": target.ssl,
        }
        manager = Sentinel(  # type: ignore[no-untyped-call]
            list(target.hosts), sentinel_kwargs=sentinel_kwargs, ssl=target.ssl, **kwargs
        )
        assert target.service is not None
        sentinel_client: SentinelArqRedis = manager.master_for(target.service, redis_class=SentinelArqRedis)
        sentinel_client.sentinel_manager = manager
        client = sentinel_client
    else:
        client = ArqRedis(connection_pool=ConnectionPool.from_url(target.url, **kwargs))
    pool = client.connection_pool
    pool.connection_class = prompt_connection_class(pool.connection_class)
    client.job_serializer = serialize_job
    client.job_deserializer = deserialize_job
    client.default_queue_name = keys.QUEUE
    return client


def arq_settings(target: RedisTarget | str) -> RedisSettings:
    """arq's own connection settings for ``target`` (used by ``arq --check``)."""
    if isinstance(target, str):
        target = parse_redis_url(target)
    common: dict[str, Any] = {
        "database": target.db,
        "username": target.username,
        "password": target.password,
        "ssl": target.ssl,
        "conn_timeout": int(CONNECT_TIMEOUT_S),
        "conn_retries": RETRIES,
        "retry": retry_policy(),
        "retry_on_error": [RedisConnectionError, RedisTimeoutError, OSError],
    }
    if target.sentinel:
        assert target.service is not None
        return RedisSettings(host=list(target.hosts), sentinel=True, sentinel_master=target.service, **common)
    if target.unix_path is not None:
        return RedisSettings(unix_socket_path=target.unix_path, **common)
    host, port = target.hosts[0]
    return RedisSettings(host=host, port=port, **common)
