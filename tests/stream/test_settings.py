from __future__ import annotations

import pytest

from intentstream.stream.settings import DEFAULT_FILE, Settings, SettingsError, load_settings


def test_defaults_file_matches_the_dataclass_defaults():
    # config/default.toml documents every knob; it must not drift from the code's defaults
    assert load_settings(env={}) == Settings()


def test_every_knob_is_documented_in_the_defaults_file():
    import dataclasses
    import tomllib

    data = tomllib.loads(DEFAULT_FILE.read_text())
    defaults = Settings()
    for section in dataclasses.fields(Settings):
        names = {f.name for f in dataclasses.fields(getattr(defaults, section.name))}
        assert set(data[section.name]) == names, section.name


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
