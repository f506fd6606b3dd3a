from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import MISSING

import pytest

from intentstream.stream.settings import (
    DEFAULT_FILE,
    PersonaSettings,
    Settings,
    SettingsError,
    default_settings,
    load_settings,
)


def _sections() -> list[tuple[str, type]]:
    return [(f.name, type(getattr(default_settings(), f.name))) for f in dataclasses.fields(Settings)]


def test_the_defaults_file_defines_exactly_the_dataclass_fields():
    # config/default.toml is the only home of the defaults: every knob, nothing else
    data = tomllib.loads(DEFAULT_FILE.read_text())
    assert set(data) == {f.name for f in dataclasses.fields(Settings)}
    for name, cls in _sections():
        assert set(data[name]) == {f.name for f in dataclasses.fields(cls)}, name


def test_the_settings_dataclasses_carry_no_defaults():
    for cls in (Settings, *(cls for _, cls in _sections())):
        with_default = [f.name for f in dataclasses.fields(cls) if f.default is not MISSING or f.default_factory is not MISSING]
        assert not with_default, cls.__name__


def test_a_knob_missing_from_the_defaults_file_is_named(tmp_path):
    text = DEFAULT_FILE.read_text()
    assert "\ninactivity_gap_s = " in text
    base = tmp_path / "default.toml"
    base.write_text(text.replace("\ninactivity_gap_s = ", "\n# inactivity_gap_s = "))
    with pytest.raises(SettingsError, match=r"missing setting \[sessions\] inactivity_gap_s"):
        load_settings(env={}, base=base)
    base.write_text(text.replace("[ops]", "[ops_gone]"))
    with pytest.raises(SettingsError, match="unknown setting"):
        load_settings(env={}, base=base)
    with pytest.raises(SettingsError, match="not found"):
        load_settings(env={}, base=tmp_path / "nothing.toml")


def test_a_table_missing_from_the_defaults_file_is_named(tmp_path):
    text = DEFAULT_FILE.read_text()
    head, _, _ = text.partition("\n[ops]\n")
    base = tmp_path / "default.toml"
    base.write_text(head)
    with pytest.raises(SettingsError, match=r"missing setting table\(s\) \[ops\]"):
        load_settings(env={}, base=base)


def test_defaults_with_overrides():
    assert default_settings() == load_settings(env={}) == Settings.defaults()
    cfg = PersonaSettings.defaults(n_clusters=3)
    assert cfg.n_clusters == 3 and cfg.seed == default_settings().personas.seed
    assert PersonaSettings.defaults() == default_settings().personas
    s = Settings.defaults(personas=cfg)
    assert s.personas is cfg and s.fatigue == default_settings().fatigue
    for name, cls in _sections():
        assert cls.defaults() == getattr(default_settings(), name)
    with pytest.raises(TypeError):
        PersonaSettings.defaults(no_such_knob=1)


def test_override_file_then_environment(tmp_path):
    override = tmp_path / "o.toml"
    override.write_text('[sessions]\ninactivity_gap_s = 600\n[topics]\npartitions = 3\n')
    s = load_settings(override, env={"INTENTSTREAM_TOPICS__PARTITIONS": "12"})
    assert s.sessions.inactivity_gap_s == 600
    assert s.topics.partitions == 12  # environment wins over files
    assert s.sessions.max_session_s == 14400  # untouched keys keep their defaults


def test_config_path_from_environment(tmp_path):
    override = tmp_path / "o.toml"
    override.write_text('[events]\ndefault_tz = "Asia/Shanghai"\n')
    assert load_settings(env={"INTENTSTREAM_CONFIG": str(override)}).events.default_tz == "Asia/Shanghai"


@pytest.mark.parametrize(
    "env",
    [
        {"INTENTSTREAM_SESSIONS__INACTIVITY_GAP_S": "soon"},
        {"INTENTSTREAM_SESSIONS__NO_SUCH_KNOB": "1"},
        {"INTENTSTREAM_NOSECTION__X": "1"},
    ],
)
def test_bad_values_and_unknown_knobs_fail_loudly(env):
    with pytest.raises(SettingsError):
        load_settings(env=env)


def test_secrets_stay_out_of_repr():
    s = load_settings(env={"INTENTSTREAM_KAFKA__SASL_PASSWORD": "hunter2", "INTENTSTREAM_REDIS__URL": "redis://:pw@h:1/0"})
    assert s.kafka.sasl_password == "hunter2"
    assert "hunter2" not in repr(s) and "pw@" not in repr(s)
