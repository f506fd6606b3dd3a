from __future__ import annotations

import copy
import re
import tomllib

import pytest

from intentstream.stream.contract.events import MESSAGE_CHANNELS
from intentstream.stream.settings import load_settings
from intentstream.stream.decisions.strategies import (
    CatalogueError,
    Coupon,
    catalogue_from_settings,
    default_path,
    load_catalogue,
    money,
    parse_catalogue,
)
from intentstream.stream.triggers.rules import ALL_TRIGGERS


@pytest.fixture(scope="module")
def cat():
    return load_catalogue()


@pytest.fixture(scope="module")
def raw():
    return tomllib.loads(default_path().read_text())


def test_catalogue_covers_every_trigger_with_two_groups(cat):
    assert set(cat.triggers) == set(ALL_TRIGGERS)
    for trig in ALL_TRIGGERS:
        d, a = cat.choose(trig), cat.choose(trig, ignored_streak=5)
        assert (d.group, a.group) == ("default", "alternate")
        assert d.strategy.key != a.strategy.key, trig
    assert cat.languages == ("en", "zh")


def test_cart_abandoned_default_is_push_in_app_email_with_a_coupon(cat):
    st = cat.choose("cart_abandoned").strategy
    assert st.channels == ("push", "in_app", "email")
    assert st.coupon == Coupon(10.0, "USD", 48, 50.0, "CART")


def test_every_strategy_renders_cleanly_with_and_without_facts(cat):
    facts = {"amount": 1299.5, "currency": "USD", "item_id": "SKU-1042", "category": "ETFs", "step": "kyc_start"}
    for key, st in cat.strategies.items():
        assert set(st.channels) <= MESSAGE_CHANNELS
        for f in ({}, facts):
            content = cat.render(st, f)
            assert set(content) == {"en", "zh"}
            for lang, texts in content.items():
                for name, text in texts.items():
                    if text is None:
                        assert name == "coupon_line" and st.coupon is None
                        continue
                    assert not re.search(r"[{}]", text), (key, lang, name, text)
                    assert text.strip() == text and "  " not in text, (key, lang, name, text)
                if lang == "zh":
                    assert re.search(r"[\u4e00-\u9fff]", texts["body"]), key


def test_rendering_fills_money_and_falls_back_per_language(cat):
    st = cat.strategies["payment_retry_help"]
    with_amount = cat.render(st, {"amount": 129.5, "currency": "EUR"})
    assert "EUR 129.50" in with_amount["en"]["body"] and "EUR 129.50" in with_amount["zh"]["body"]
    without = cat.render(st, {})
    assert "your order" in without["en"]["body"] and "本笔订单" in without["zh"]["body"]
    coupon = cat.render(cat.strategies["winback_coupon"], {"category": "ETFs"})
    assert coupon["en"]["coupon_line"] == "Welcome back: USD 20 off orders over USD 100 for the next 72 hours."
    assert "ETFs" in coupon["zh"]["body"]


def test_money_formatting():
    assert money(1000.0, "USD") == "USD 1,000"
    assert money(0.5) == "0.50"


def test_regret_rule_switches_at_the_streak(cat):
    assert cat.choose("payment_stalled", ignored_streak=4).group == "default"
    assert cat.choose("payment_stalled", ignored_streak=5).strategy.key == "payment_support_contact"
    assert cat.choose("payment_stalled", ignored_streak=2, regret_streak=2).group == "alternate"
    assert cat.choose("payment_stalled", ignored_streak=99, regret_streak=0).group == "default"  # 0: rule off


def test_persona_overrides_first_match_wins(cat):
    both = {"behaviour_stage": "transacted", "main_activity": "coupon_oriented"}
    c = cat.choose("cart_abandoned", both)
    assert (c.strategy.key, c.persona_rule) == ("cart_bigger_coupon", 0)
    assert cat.choose("cart_abandoned", {"behaviour_stage": "transacted"}).strategy.key == "cart_one_tap_checkout"
    assert cat.choose("cart_abandoned", {"behaviour_stage": "exploring"}).persona_rule is None
    # an override without an alternate keeps the trigger's alternate under the regret rule
    assert cat.choose("cart_abandoned", both, ignored_streak=5).strategy.key == "cart_recap_email"
    # an override with an alternate replaces it
    kyc = cat.choose("kyc_stalled", {"behaviour_stage": "exploring"}, ignored_streak=5)
    assert (kyc.strategy.key, kyc.group) == ("kyc_progress_reward", "alternate")
    # every attribute of `when` must match
    trader = {"behaviour_stage": "transacted", "main_activity": "purchase_focused"}
    assert cat.choose("churn_risk", trader).strategy.key == "winback_market_update"
    assert cat.choose("churn_risk", {"main_activity": "purchase_focused"}).strategy.key == "winback_coupon"


def test_unknown_trigger_is_a_key_error(cat):
    with pytest.raises(KeyError, match="no_such"):
        cat.choose("no_such")


def test_coupon_code_and_expiry_are_deterministic():
    c = Coupon(5.0, "USD", 24, code_prefix="KYC")
    d = c.details("abcdef0123456789abcd", 1767607200000)
    assert d["code"] == "KYC-ABCDEF0123"
    assert d["expires_at"] == "2026-01-06T10:00:00.000Z"


def test_catalogue_path_comes_from_settings(tmp_path, raw):
    small = copy.deepcopy(raw)
    small["triggers"] = {"kyc_rejected": raw["triggers"]["kyc_rejected"]}
    path = tmp_path / "s.toml"
    path.write_text(_to_toml(small))
    s = load_settings(env={"INTENTSTREAM_STRATEGIES__CATALOGUE": str(path)})
    assert set(catalogue_from_settings(s).triggers) == {"kyc_rejected"}
    assert set(catalogue_from_settings(load_settings(env={})).triggers) == set(ALL_TRIGGERS)
    with pytest.raises(CatalogueError, match="No such file"):
        load_catalogue(tmp_path / "missing.toml")


def _mutate(raw, path, value):
    data = copy.deepcopy(raw)
    *head, last = path
    node = data
    for k in head:
        node = node[k]
    if value is _DELETE:
        del node[last]
    else:
        node[last] = value
    return data


_DELETE = object()
CART = ("strategies", "cart_reminder_coupon")


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        (("colour",), "red", "unknown key"),
        (("languages",), [], "languages"),
        ((*CART, "channels"), ["push", "fax"], "fax"),
        ((*CART, "channels"), ["push", "push"], "twice"),
        ((*CART, "channels"), [], "non-empty"),
        ((*CART, "zh"), _DELETE, "zh must be a table"),
        ((*CART, "en", "title"), "", "title"),
        ((*CART, "en", "subtitle"), "x", "unknown key"),
        ((*CART, "en", "body"), "Hi {first_name}", "first_name"),
        ((*CART, "en", "body"), "Take {coupon_value} off", "coupon_line"),
        ((*CART, "en", "coupon_line"), _DELETE, "coupon_line missing"),
        ((*CART, "coupon", "value"), 0, "value"),
        ((*CART, "coupon", "expiry_hours"), 1.5, "expiry_hours"),
        ((*CART, "coupon", "percent"), 10, "unknown key"),
        (("strategies", "cart_recap_email", "en", "coupon_line"), "{coupon_value}", "no coupon"),
        (("triggers", "cart_abandoned", "default"), "nope", "no strategy named 'nope'"),
        (("triggers", "cart_abandoned", "alternate"), _DELETE, "alternate"),
        (("triggers", "cart_abandoned", "personas"), {"when": {}}, "array of tables"),
        (("triggers", "cart_abandoned", "personas", 0, "when"), {}, "when"),
        (("triggers", "cart_abandoned", "personas", 0, "default"), _DELETE, "default and/or an alternate"),
    ],
)
def test_bad_catalogues_fail_loudly(raw, path, value, message):
    with pytest.raises(CatalogueError, match=re.escape(message)):
        parse_catalogue(_mutate(raw, path, value))


def _to_toml(data, prefix=""):
    """A tiny TOML writer for the catalogue's shapes (tests only)."""
    import json

    def val(v):
        if isinstance(v, dict):
            return "{ " + ", ".join(f"{k} = {val(x)}" for k, x in v.items()) + " }"
        return json.dumps(v, ensure_ascii=False)

    lines, tables = [], []
    for k, v in data.items():
        if isinstance(v, dict) and all(isinstance(x, dict) for x in v.values()) and v:
            tables.append((k, v))
        elif isinstance(v, list) and v and all(isinstance(x, dict) for x in v):
            for item in v:
                lines.append(f"[[{prefix}{k}]]")
                lines += [f"{ik} = {val(iv)}" for ik, iv in item.items()]
        else:
            lines.append(f"{k} = {val(v)}")
    out = "\n".join(lines) + "\n"
    for k, v in tables:
        for name, body in v.items():
            head = f"{prefix}{k}.{name}"
            simple = {a: b for a, b in body.items() if not (isinstance(b, list) and b and isinstance(b[0], dict))}
            out += f"[{head}]\n" + "".join(f"{a} = {val(b)}\n" for a, b in simple.items())
            for a, b in body.items():
                if a not in simple:
                    for item in b:
                        out += f"[[{head}.{a}]]\n" + "".join(f"{ik} = {val(iv)}\n" for ik, iv in item.items())
    return out
