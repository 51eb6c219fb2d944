"""The segment language: precise errors for invalid expressions, and what valid ones compile to."""

from __future__ import annotations

import duckdb
import pytest

from panorama.config import ConfigError, parse_config
from panorama.segments.language import SegmentError, compile_event_filter, compile_segment

COLUMNS = {
    "orders": "BIGINT", "revenue": "DOUBLE", "email": "VARCHAR", "lifecycle_stage": "VARCHAR",
    "birthday": "DATE", "last_order_at": "TIMESTAMP", "churn_probability": "DOUBLE",
}  # fmt: skip


def error(expression: str, columns=COLUMNS) -> str:
    with pytest.raises(SegmentError) as info:
        compile_segment(expression, columns)
    return str(info.value)


def test_unknown_column_names_it_the_closest_known_and_points_at_it():
    message = error("ordres >= 2 AND lifecycle_stage = 'active'")
    assert message.startswith("unknown column 'ordres'; did you mean orders? (at column 1)")
    assert message.splitlines()[1:] == ["    ordres >= 2 AND lifecycle_stage = 'active'", "    ^^^^^^"]
    message = error("orders >= 2 AND lifecycle_stag = 'active'")
    assert "unknown column 'lifecycle_stag'; did you mean lifecycle_stage? (at column 17)" in message
    assert message.splitlines()[-1] == "    " + " " * 16 + "^" * len("lifecycle_stag")
    assert "did you mean" not in error("zzzz > 1")


def test_functions_outside_the_allow_list_are_refused():
    message = error("orders > 1 AND read_csv('x.csv') IS NOT NULL")
    assert message.startswith("function read_csv() is not allowed in a segment")
    assert "(at column 16)" in message and "performed" in message  # lists what is allowed
    assert "did you mean lower?" in error("lowr(email) = 'a'")
    assert "subqueries are not allowed" in error("orders > (SELECT count(*) FROM events)")
    assert "more than one statement" in error("orders > 1; DROP TABLE events")
    assert "not a statement" in error("DELETE FROM events")
    assert "* is not allowed" in error("*")
    assert "without a table name" in error("p.orders > 1")


def test_syntax_errors_say_where():
    message = error("orders >")
    assert message.startswith("syntax error") and "(at column 8)" in message
    assert error("   ") == "the expression is empty"
    assert "syntax error" in error("orders >= 2 AND (email = 'x'")


def test_event_function_arguments_are_checked():
    assert "within" in error("performed('Order Completed', within='3 weeks') > 1")
    assert "unknown argument 'wihtin'" in error("performed('Order Completed', wihtin='3d')")
    assert "event name must be a quoted string" in error("performed(Order) > 1")
    assert "takes one event name" in error("performed('A', 'B')")
    message = error("performed('Order Completed', where='revenue >')")
    assert message.startswith("performed(): where='revenue >': syntax error")
    assert "not allowed" in error("performed('A', where='read_csv(1) > 1')")
    assert "cannot be used inside an event filter" in error("performed('A', where='performed(''B'') > 0')")


def test_performed_compiles_to_counts_and_truth_values():
    c = compile_segment("performed('Order Completed', within='30d') >= 2 AND NOT performed('Refund')", COLUMNS)
    assert len(c.events) == 2 and c.time_dependent
    counts = {e.events: e for e in c.events}
    assert counts[("Order Completed",)].within == 30 * 86400
    assert counts[("Refund",)].within is None
    assert "COALESCE(_ev_" in c.sql and "> 0" in c.sql  # bare performed() means "at least once"
    assert not compile_segment("performed('Order Completed') >= 2", COLUMNS).time_dependent
    c = compile_segment("performed(['Product Added', 'Checkout Started'], within := '1h')", COLUMNS)
    assert c.events[0].events == ("Product Added", "Checkout Started") and c.events[0].within == 3600
    assert compile_segment("last_performed('Order Completed') < now() - INTERVAL 30 DAY", COLUMNS).time_dependent
    assert compile_segment("days_until_anniversary(birthday) BETWEEN 0 AND 7", COLUMNS).time_dependent
    assert compile_segment("days_since(last_order_at) > 30", COLUMNS).time_dependent
    c = compile_segment("ORDERS >= 2 and Email ILIKE '%@example.com'", COLUMNS)  # case-insensitive names
    assert c.columns == {"orders", "email"} and not c.time_dependent


def test_property_filters_read_typed_columns_and_json_properties():
    sql = compile_event_filter("revenue > 50 AND items >= 2 AND properties.coupon = 'X' AND context.ip <> '1'")
    assert '"revenue" > 50' in sql  # a promoted, typed column
    assert "TRY_CAST(JSON_EXTRACT_STRING(\"properties\", '$.\"items\"') AS DOUBLE) >= 2" in sql
    assert "JSON_EXTRACT_STRING(\"properties\", '$.\"coupon\"') = 'X'" in sql
    assert "JSON_EXTRACT_STRING(\"context\", '$.\"ip\"')" in sql
    with pytest.raises(SegmentError, match="qualify only with properties"):
        compile_event_filter("orders.x = 1")
    con = duckdb.connect()
    con.execute("CREATE TABLE e AS SELECT 40.0 AS revenue, '{\"items\": 3, \"coupon\": \"X\"}' AS properties, "
                "'{\"ip\": \"2\"}' AS context")  # fmt: skip
    assert con.execute(f"SELECT count(*) FROM e WHERE {sql}").fetchone()[0] == 0
    assert con.execute(f"SELECT count(*) FROM e WHERE {sql.replace('> 50', '> 30')}").fetchone()[0] == 1


def test_config_errors_for_triggers_and_segments_name_the_key():
    base = {"name": "x", "destinations": {"hook": {"type": "webhook", "url": "http://127.0.0.1:9/x"}}}
    with pytest.raises(ConfigError, match=r"triggers.t.destinations: unknown destination 'hok'"):
        parse_config({**base, "triggers": {"t": {"event": "A", "destinations": "hok"}}})
    with pytest.raises(ConfigError, match=r"triggers.t.segment: unknown segment 'vip'"):
        parse_config({**base, "triggers": {"t": {"segment": "vip", "destinations": "hook"}}})
    with pytest.raises(ConfigError, match="`not_followed_by` and `within` go together"):
        parse_config({**base, "triggers": {"t": {"event": "A", "not_followed_by": "B", "destinations": "hook"}}})
    with pytest.raises(ConfigError, match=r"triggers.t.within: .*duration '30 minutes'"):
        parse_config({**base, "triggers": {"t": {"event": "A", "not_followed_by": "B", "within": "30 minutes",
                                                 "destinations": "hook"}}})  # fmt: skip
    with pytest.raises(ConfigError, match=r"destinations.hook.webhook.url: .*must start with http"):
        parse_config({"name": "x", "destinations": {"hook": {"type": "webhook", "url": "ftp://x"}}})
    with pytest.raises(ConfigError, match=r"destinations.mail.email: .*give `text` and/or `html`"):
        parse_config({"name": "x", "destinations": {"mail": {"type": "email", "sender": "a@b.c", "subject": "s"}}})
    with pytest.raises(ConfigError, match=r"segments.vip.where: syntax error: incomplete expression .*column 8"):
        parse_config({**base, "segments": {"vip": "orders >"}})
    with pytest.raises(ConfigError, match=r"triggers.t.where: function nope\(\) is not allowed"):
        parse_config({**base, "triggers": {"t": {"event": "A", "where": "nope(x)", "destinations": "hook"}}})
    config = parse_config({**base, "segments": {"vip": "orders > 5", "new": {"where": "orders = 1",
                                                                         "recheck_every": "10s"}}})  # fmt: skip
    assert config.segments["vip"].where == "orders > 5" and config.segments["new"].recheck_every == 10
