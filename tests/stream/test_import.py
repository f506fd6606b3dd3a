"""``intentstream import`` (stream/cli/importer.py) and its mapping tables (stream/ingest/):
every preset's mapping, a user's CSV and JSONL mappings, the time-ordered output, dead
letters, ids stable across runs, and the one-line errors."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from intentstream.stream import codec
from intentstream.stream.cli import main
from intentstream.stream.cli.sort_by_time import sort_by_time
from intentstream.stream.contract.events import Event, parse_event, record_ts
from intentstream.stream.ingest.convert import ImportTally, convert
from intentstream.stream.ingest.mapping import Mapping, MappingError, row_id
from intentstream.stream.ingest.presets import load_mapping
from intentstream.stream.ingest.readers import records

SEGMENT_SAMPLE = Path(__file__).resolve().parent.parent / "data" / "import" / "segment.jsonl"

# epoch seconds; 1511544000 = 2017-11-24T17:20:00Z. Rows 2 and 4 share a time: file order stays.
TAOBAO = b"""1,100,7,pv,1511544060
2,200,8,cart,1511544000
1,100,7,share,1511544001
3,300,9,cart,1511544000
1,100,7,buy,not-a-time
2,200,8
1,100,7,fav,1511543000
"""

REES46 = b"""\xef\xbb\xbfevent_time,event_type,product_id,category_id,category_code,brand,price,user_id,user_session
2019-10-01 00:00:05 UTC,view,44600062,2103807459595387724,,shiseido,35.79,541312140,72d76fde
2019-10-01 00:00:01 UTC,cart,3900821,2053013552326770905,appliances.environment.water_heater,aqua,33.20,554748717,9333dfbd
2019-10-01 00:00:09 UTC,remove_from_cart,3900821,2053013552326770905,appliances.environment.water_heater,aqua,33.20,554748717,9333dfbd
2019-10-01 00:01:00 UTC,purchase,3900821,2053013552326770905,appliances.environment.water_heater,aqua,33.20,554748717,9333dfbd
2019-10-01 00:01:00 UTC,purchase,3900821,2053013552326770905,,,-1,554748717,9333dfbd
"""

RETAILROCKET = b"""timestamp,visitorid,event,itemid,transactionid
1433221332117,257597,view,355908,
1433224214164,992329,view,248676,
1433221955914,111016,addtocart,10572,
1433222000000,111016,transaction,10572,4000
"""


def import_file(tmp_path: Path, data: bytes, fmt: str, *extra: str, name: str = "in.csv") -> tuple[int, list[dict], list[dict]]:
    src = tmp_path / name
    src.write_bytes(data)
    out = tmp_path / "events.jsonl"
    status = main(["import", str(src), "--format", fmt, "--out", str(out), *extra])
    events = [codec.loads(line) for line in out.read_bytes().splitlines()] if out.exists() else []
    dead_path = tmp_path / "events.rejected.jsonl"
    dead = [codec.loads(line) for line in dead_path.read_bytes().splitlines()] if dead_path.exists() else []
    return status, events, dead


def times(events: list[dict]) -> list[int]:
    return [record_ts(e["ts"]) for e in events]


# --------------------------------------------------------------------------- presets


def test_taobao_maps_behaviours_sorts_by_time_and_dead_letters_bad_rows(tmp_path, capsys):
    status, events, dead = import_file(tmp_path, TAOBAO, "taobao")
    assert status == 0
    assert [(e["user_id"], e["type"]) for e in events] == [
        ("1", "click"), ("2", "add_to_cart"), ("3", "add_to_cart"), ("1", "page_view")
    ]  # fmt: skip
    assert times(events) == sorted(times(events)) and times(events)[1] == times(events)[2] == 1511544000000
    first = events[0]
    assert first == {"event_id": row_id(b"1,100,7,fav,1511543000"), "user_id": "1", "ts": "2017-11-24T17:03:20.000Z",
                     "type": "click", "item_id": "100", "category": "7", "tz": "Asia/Shanghai"}  # fmt: skip
    assert [(d["reason"], d["source"].rsplit(":", 1)[1], d["raw"]) for d in dead] == [
        ("bad_ts", "5", "1,100,7,buy,not-a-time"), ("bad_row", "6", "2,200,8")
    ]  # fmt: skip
    out, err = capsys.readouterr()
    assert out == ""  # the summary table is on stderr
    lines = err.splitlines()
    assert lines[0].startswith(f"import {tmp_path / 'in.csv'} (taobao) -> {tmp_path / 'events.jsonl'}: ")
    assert lines[1:] == [
        "  rows read 7",
        "  imported  4 events: add_to_cart 2, page_view 1, click 1",
        "  users     3",
        "  time span   2017-11-24T17:03:20.000Z .. 2017-11-24T17:21:00.000Z (0.0 days)",
        f"  rejected  2 rows, dead-lettered to {tmp_path / 'events.rejected.jsonl'}",
        "  dropped   1 rows of types the mapping does not carry",
        "  rejected  bad_row 1",
        "  rejected  bad_ts  1",
        "  dropped   share   1",
    ]
    assert all(isinstance(parse_event(codec.dumps(e)), Event) for e in events)


def test_rees46_reads_the_header_utc_times_prices_and_props(tmp_path):
    status, events, dead = import_file(tmp_path, REES46, "rees46")
    assert status == 0
    assert [(e["type"], e["ts"]) for e in events] == [
        ("add_to_cart", "2019-10-01T00:00:01.000Z"), ("page_view", "2019-10-01T00:00:05.000Z"),
        ("remove_from_cart", "2019-10-01T00:00:09.000Z"), ("payment_success", "2019-10-01T00:01:00.000Z"),
    ]  # fmt: skip
    cart, view = events[0], events[1]
    assert cart["category"] == "appliances.environment.water_heater" and cart["amount"] == 33.2
    assert view["category"] == "2103807459595387724"  # no category_code: the id
    assert cart["props"] == {"brand": "aqua", "session": "9333dfbd"} and cart["item_id"] == "3900821"
    assert [d["reason"] for d in dead] == ["bad_amount"]  # a price of -1


def test_retailrocket_reads_epoch_milliseconds_and_the_transaction_id(tmp_path):
    status, events, dead = import_file(tmp_path, RETAILROCKET, "retailrocket")
    assert status == 0 and dead == []
    assert [(e["user_id"], e["type"]) for e in events] == [
        ("257597", "page_view"), ("111016", "add_to_cart"), ("111016", "payment_success"), ("992329", "page_view")
    ]  # fmt: skip
    assert events[0]["ts"] == "2015-06-02T05:02:12.117Z" and "props" not in events[0]
    assert events[2]["props"] == {"transaction_id": "4000"}


def test_segment_preset_maps_calls_fallbacks_and_properties(tmp_path, capsys):
    status, events, dead = import_file(tmp_path, SEGMENT_SAMPLE.read_bytes(), "segment", name="calls.jsonl")
    assert status == 0
    by_id = {e["event_id"]: e for e in events}
    assert by_id["m-02"]["type"] == "page_view" and by_id["m-02"]["page"] == "/" and by_id["m-02"]["device"] == "ios"
    assert by_id["m-04"] == {"event_id": "m-04", "user_id": "alice", "ts": "2026-01-05T10:02:00.000Z", "type": "add_to_cart",
                             "item_id": "sku-9", "category": "shoes", "amount": 59.9, "currency": "EUR", "device": "ios",
                             "tz": "Europe/Berlin"}  # fmt: skip
    assert by_id["m-09"]["type"] == "payment_success" and by_id["m-09"]["amount"] == 25.0  # revenue before total
    assert by_id["m-09"]["props"] == {"order_id": "o-1"}
    assert by_id["m-12"]["page"] == "Feed" and by_id["m-14"]["ts"] == "2026-01-05T12:31:00.000Z"  # screen name; sentAt
    assert by_id["m-11"]["type"] == "coupon_redeem" and by_id["m-13"]["type"] == "app_open" and by_id["m-14"]["type"] == "login"
    anon = [e for e in events if e["user_id"] == "anon-7"]  # no userId, no messageId, originalTimestamp with an offset
    assert len(anon) == 1 and anon[0]["ts"] == "2026-01-05T10:01:00.000Z" and len(anon[0]["event_id"]) == 20
    assert sorted(d["reason"] for d in dead) == ["bad_ts", "missing_field", "not_json"]
    missing = next(d for d in dead if d["reason"] == "missing_field")
    assert missing["detail"] == "user_id (from userId, anonymousId)"
    err = capsys.readouterr().err
    assert "identify" in err and "Order Refunded" in err


# --------------------------------------------------------------------------- own mappings


def test_a_csv_mapping_with_local_times_a_delimiter_and_spellings_of_types(tmp_path):
    (tmp_path / "shop.toml").write_text(
        """
delimiter = ";"
[fields]
user_id = "customer"
ts = "when"
type = "action"
amount = "value"
[time]
format = "%d/%m/%Y %H:%M"
timezone = "Europe/Berlin"
[types]
"Add To Basket" = "add_to_cart"
"ORDER_PAID" = "payment_success"
"wishlist" = ""
[props]
store = "store"
[constants]
currency = "EUR"
channel = "web"
"""
    )
    data = b"customer;when;action;value;store\nc1;05/01/2026 11:00;add-to-basket;12,5;berlin\nc1;05/01/2026 10:30;order paid;20;berlin\nc2;05/07/2026 11:00;Wishlist;;x\nc2;05/07/2026 11:00;return;;x\n"
    status, events, dead = import_file(tmp_path, data, "csv", "--mapping", str(tmp_path / "shop.toml"))
    assert status == 0
    # winter: UTC+1
    assert [(e["type"], e["ts"]) for e in events] == [("payment_success", "2026-01-05T09:30:00.000Z")]
    assert events[0]["currency"] == "EUR" and events[0]["channel"] == "web" and events[0]["props"] == {"store": "berlin"}
    assert [d["reason"] for d in dead] == ["bad_amount"]  # "12,5"


def test_a_jsonl_mapping_reads_dotted_paths_and_epoch_milliseconds(tmp_path):
    (tmp_path / "app.toml").write_text(
        """
[fields]
event_id = "id"
user_id = ["user.id", "device_id"]
ts = "at"
type = "name"
item_id = "payload.sku"
[time]
format = "epoch_ms"
[types]
open = "app_open"
add = "add_to_cart"
"""
    )
    data = b'{"id":"a","user":{"id":42},"at":1767607200000,"name":"add","payload":{"sku":7}}\n{"id":"b","device_id":"d1","at":"1767607100000","name":"open"}\n[1]\n'
    status, events, dead = import_file(tmp_path, data, "jsonl", "--mapping", str(tmp_path / "app.toml"), name="app.jsonl")
    assert status == 0
    assert [(e["event_id"], e["user_id"], e["type"], e.get("item_id")) for e in events] == [
        ("b", "d1", "app_open", None), ("a", "42", "add_to_cart", "7")
    ]  # fmt: skip
    assert [d["reason"] for d in dead] == ["not_object"]


def test_a_mapping_file_laid_over_a_preset(tmp_path):
    (tmp_path / "more.toml").write_text('[types]\nfav = ""\n[constants]\ntz = "Asia/Hong_Kong"\n')
    status, events, _ = import_file(tmp_path, TAOBAO, "taobao", "--mapping", str(tmp_path / "more.toml"))
    assert status == 0
    assert [e["type"] for e in events] == ["add_to_cart", "add_to_cart", "page_view"]  # fav dropped on purpose
    assert {e["tz"] for e in events} == {"Asia/Hong_Kong"}


# --------------------------------------------------------------------------- ids, order, size


def test_reimporting_gives_the_same_bytes_and_ids(tmp_path):
    src = tmp_path / "ub.csv"
    src.write_bytes(TAOBAO)
    outs = []
    for n in (1, 2):
        out = tmp_path / f"run{n}.jsonl"
        assert main(["import", str(src), "--format", "taobao", "--out", str(out)]) == 0
        outs.append(out.read_bytes())
    assert outs[0] == outs[1]
    ids = [codec.loads(line)["event_id"] for line in outs[0].splitlines()]
    assert len(set(ids)) == len(ids) == 4


def test_the_sort_is_stable_when_it_spills_runs_to_disk(tmp_path):
    rows = b"".join(b"%d,1,1,pv,%d\n" % (u, 1511544000 + (u % 3)) for u in range(30))
    mapping = load_mapping("taobao")
    events = convert(records(io.BytesIO(rows), mapping), mapping, "ub.csv", ImportTally())
    ordered = [codec.loads(line) for _, line in sort_by_time(events, run_lines=4, tmp_dir=str(tmp_path))]
    assert [int(e["user_id"]) for e in ordered] == [u for k in range(3) for u in range(30) if u % 3 == k]


def test_to_stdout_and_the_default_dead_letter_name(tmp_path, capsysbinary, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "ub.csv").write_bytes(TAOBAO)
    assert main(["import", "ub.csv", "--format", "taobao", "--out", "-"]) == 0
    assert len(capsysbinary.readouterr().out.splitlines()) == 4
    assert len((tmp_path / "ub.rejected.jsonl").read_bytes().splitlines()) == 2


def test_json_summary_on_stdout_or_beside_the_events_on_stderr(tmp_path, capsysbinary, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "ub.csv").write_bytes(TAOBAO)
    assert main(["import", "ub.csv", "--format", "taobao", "--out", "events.jsonl", "--json"]) == 0
    out, err = capsysbinary.readouterr()
    summary = codec.loads(out)
    assert out.count(b"\n") == 1 and b"rows read" not in err
    assert summary.pop("elapsed_s") >= 0 and summary == {
        "input": "ub.csv", "format": "taobao", "output": "events.jsonl", "dead_letter": "events.rejected.jsonl",
        "rows": 7, "events": 4, "types": {"add_to_cart": 2, "click": 1, "page_view": 1}, "users": 3,
        "first_ts": "2017-11-24T17:03:20.000Z", "last_ts": "2017-11-24T17:21:00.000Z",
        "rejected": {"bad_row": 1, "bad_ts": 1}, "dropped": {"share": 1},
    }  # fmt: skip
    assert main(["import", "ub.csv", "--format", "taobao", "--out", "-", "--json"]) == 0
    out, err = capsysbinary.readouterr()
    assert out == (tmp_path / "events.jsonl").read_bytes()  # the events, byte-identical; the summary beside them
    assert codec.loads(err.splitlines()[-1])["output"] == "stdout"


# --------------------------------------------------------------------------- user mistakes


@pytest.mark.parametrize(
    "argv, mapping, message",
    [
        (["nowhere.csv", "--format", "taobao", "--out", "o.jsonl"], None, "cannot read nowhere.csv: No such file or directory"),
        (["in.csv", "--format", "parquet", "--out", "o.jsonl"], None, "unknown format 'parquet'"),
        (["in.csv", "--format", "csv", "--out", "o.jsonl"], None, "--format csv needs --mapping FILE.toml"),
        (["in.csv", "--format", "taobao"], None, "say where the events go"),
        (["in.csv", "--format", "csv", "--mapping", "m.toml", "--out", "o.jsonl"], "[fields]\nuser_id = 'a'\n", "must name the source of ts, type"),
        (["in.csv", "--format", "csv", "--mapping", "m.toml", "--out", "o.jsonl"], "[fields\n", "not valid TOML"),
        (["in.csv", "--format", "csv", "--mapping", "m.toml", "--out", "o.jsonl"], "colums = []\n", "unknown key(s) ['colums']"),
        (["in.csv", "--format", "taobao", "--mapping", "m.toml", "--out", "o.jsonl"], "[types]\nfav = 'favourite'\n", "not a contract event type"),
        (["in.csv", "--format", "taobao", "--mapping", "m.toml", "--out", "o.jsonl"], "[time]\ntimezone = 'Mars/Base'\n", "not a known IANA zone"),
        (["in.csv", "--format", "taobao", "--mapping", "m.toml", "--out", "o.jsonl"], "[constants]\ntz = 'Mars/Base'\n", "[constants]: bad_tz"),
        (["in.csv", "--format", "taobao", "--mapping", "nope.toml", "--out", "o.jsonl"], None, "cannot read mapping nope.toml"),
        (["in.csv", "--format", "rees46", "--out", "o.jsonl"], None, "in.csv: no column 'brand', 'event_time'"),
        (["in.csv", "--format", "taobao", "--out", "in.csv"], None, "is the input file"),
    ],
)
def test_user_mistakes_are_one_line_and_exit_status_2(tmp_path, monkeypatch, capsys, argv, mapping, message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "in.csv").write_bytes(b"price,user_id,category_id,category_code,product_id,event_type,user_session\n")
    if mapping is not None:
        (tmp_path / "m.toml").write_text(mapping)
    assert main(["import", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("intentstream import: ") and message in err, err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "o.jsonl").exists()


def test_mapping_errors_name_the_problem_when_compiled():
    base = {"reader": "csv", "fields": {"user_id": "u", "ts": "t", "type": "k"}, "types": {"a": "click"}}
    with pytest.raises(MappingError, match="without a header row needs columns"):
        Mapping.compile({**base, "header": False})
    with pytest.raises(MappingError, match="not contract fields"):
        Mapping.compile({**base, "fields": {**base["fields"], "brand": "b"}})
    with pytest.raises(MappingError, match="strptime pattern"):
        Mapping.compile({**base, "time": {"format": "unix"}})
    with pytest.raises(MappingError, match=r"\[types\] is empty"):
        Mapping.compile({**base, "types": {}})


# --------------------------------------------------------------------------- Kafka


@pytest.mark.integration
def test_to_kafka_sends_the_sorted_events_as_replay_does(stack, make_topics, tmp_path, monkeypatch):
    from intentstream.agents.kafka import make_consumer

    (topic,) = make_topics("import", partitions=1)
    monkeypatch.setenv("INTENTSTREAM_KAFKA__BOOTSTRAP_SERVERS", stack.kafka_bootstrap)
    src = tmp_path / "ub.csv"
    src.write_bytes(TAOBAO)
    monkeypatch.chdir(tmp_path)
    assert main(["import", str(src), "--format", "taobao", "--to-kafka", "--topic", topic]) == 0
    consumer = make_consumer(stack.settings())
    try:
        from kafka import TopicPartition

        consumer.assign([TopicPartition(topic, 0)])
        got = []
        for _ in range(20):
            for batch in consumer.poll(timeout_ms=500).values():
                got.extend(batch)
            if len(got) >= 4:
                break
    finally:
        consumer.close()
    assert [r.key for r in got] == [b"1", b"2", b"3", b"1"]
    assert [r.timestamp for r in got] == sorted(r.timestamp for r in got)
