"""BRIDGE_REDIS_URL: every accepted form parses to the right target; errors never show a password."""

from __future__ import annotations

from urllib.parse import quote

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bridge.config import ConfigError, load_settings
from bridge.redis_url import (
    DEFAULT_SENTINEL_PORT,
    RedisTarget,
    RedisUrlError,
    arq_settings,
    parse_redis_url,
)


def test_a_plain_url_is_one_server() -> None:
    target = parse_redis_url("redis://:s3cret@cache.internal:6380/2")
    assert (target.sentinel, target.hosts, target.db, target.password) == (
        False,
        (("cache.internal", 6380),),
        2,
        "s3cret",
    )
    assert not target.ssl and parse_redis_url("rediss://cache").ssl


def test_defaults_are_port_6379_and_database_0() -> None:
    target = parse_redis_url("redis://cache")
    assert (target.hosts, target.db) == ((("cache", 6379),), 0)


def test_a_unix_socket_takes_its_database_from_the_query() -> None:
    target = parse_redis_url("unix:///run/redis/redis.sock?db=3")
    assert (target.unix_path, target.db, target.hosts) == ("/run/redis/redis.sock", 3, ())


def test_the_sentinel_form_names_every_sentinel_the_service_and_the_database() -> None:
    target = parse_redis_url("redis+sentinel://user:pw@s1:26380,s2,[::1]:26381/mymaster/4")
    assert target.sentinel
    assert target.hosts == (("s1", 26380), ("s2", DEFAULT_SENTINEL_PORT), ("::1", 26381))
    assert (target.service, target.db, target.username, target.password) == ("mymaster", 4, "user", "pw")
    assert target.sentinel_password is None and not target.ssl


def test_sentinels_with_their_own_password_and_tls() -> None:
    target = parse_redis_url("rediss+sentinel://s1/mymaster?sentinel_password=sp")
    assert (target.ssl, target.db, target.sentinel_password, target.password) == (True, 0, "sp", None)


def test_arq_gets_the_same_target_for_its_check() -> None:
    sentinel = arq_settings("redis+sentinel://:pw@s1:1,s2:2/mymaster/1")
    assert (sentinel.sentinel, sentinel.host, sentinel.sentinel_master) == (
        True,
        [("s1", 1), ("s2", 2)],
        "mymaster",
    )
    assert (sentinel.database, sentinel.password) == (1, "pw")
    plain = arq_settings("redis://cache:6390/5")
    assert (plain.sentinel, plain.host, plain.port, plain.database) == (False, "cache", 6390, 5)


@pytest.mark.parametrize(
    "url",
    [
        "http://cache",
        "redis://",
        "redis://cache/notanumber",
        "redis+sentinel://:pw@/mymaster",
        "redis+sentinel://s1:26379",
        "redis+sentinel://s1:26379/mymaster/0/extra",
        "redis+sentinel://s1:99999/mymaster",
        "redis+sentinel://s1/mymaster/x",
        "redis+sentinel://s1/mymaster?sentinel_pasword=typo",
        "redis+cluster://:pw@c1/0",
        "unix://",
    ],
)
def test_a_wrong_url_is_refused_without_repeating_its_password(url: str) -> None:
    with pytest.raises(RedisUrlError) as raised:
        parse_redis_url(url.replace(":pw@", ":hunter2@"))
    assert "hunter2" not in str(raised.value)


def test_the_configuration_names_the_variable_and_hides_the_password() -> None:
    with pytest.raises(ConfigError) as raised:
        load_settings({"BRIDGE_REDIS_URL": "redis+sentinel://:hunter2@s1/"})
    message = str(raised.value)
    assert message.startswith("BRIDGE_REDIS_URL:") and "hunter2" not in message
    assert load_settings({"BRIDGE_REDIS_URL": "redis+sentinel://s1,s2/mymaster"}).redis_url.startswith(
        "redis+"
    )


def test_repr_and_redacted_hide_passwords() -> None:
    target = parse_redis_url("redis+sentinel://:p%40ss@s1/mymaster?sentinel_password=sp4ss")
    assert target.password == "p@ss"
    assert "p@ss" not in repr(target) and "sp4ss" not in repr(target)
    assert "p%40ss" not in target.redacted() and "sp4ss" not in target.redacted()
    assert target.redacted() == "redis+sentinel://:****@s1/mymaster?sentinel_password=****"


hostnames = st.from_regex(r"[a-z][a-z0-9-]{0,20}(\.[a-z][a-z0-9-]{0,10}){0,2}", fullmatch=True)
ports = st.integers(min_value=1, max_value=65535)
passwords = st.text(alphabet=st.characters(codec="utf-8"), min_size=1, max_size=20)


@given(
    hosts=st.lists(st.tuples(hostnames, ports), min_size=1, max_size=5),
    service=st.from_regex(r"[A-Za-z0-9_-]{1,20}", fullmatch=True),
    db=st.integers(min_value=0, max_value=15),
    password=st.none() | passwords,
)
def test_any_sentinel_url_built_from_parts_parses_back_to_them(
    hosts: list[tuple[str, int]], service: str, db: int, password: str | None
) -> None:
    auth = f":{quote(password, safe='')}@" if password else ""
    url = f"redis+sentinel://{auth}{','.join(f'{h}:{p}' for h, p in hosts)}/{service}/{db}"
    target: RedisTarget = parse_redis_url(url)
    assert (target.hosts, target.service, target.db, target.password) == (tuple(hosts), service, db, password)
    if password:
        assert quote(password, safe="") not in target.redacted()
