"""The Python bindings against a real relay (started by mobile/tests/python.rs): sign in,
write offline, sync, receive another device's change through a live session and an observer,
list a conflict, and a wrong password; a volunteer's encrypted replica, its wrong keys and the
write its role may not make. Any failed check raises, which exits non-zero."""

import datetime
import queue
import sys

from gridsync import (
    ErrorCode,
    GridsyncError,
    LiveSessionListener,
    OpenOptions,
    QueryListener,
    RecordQuery,
    Replica,
    SignInOptions,
    SyncOnceOptions,
    choice_label,
    field_label,
    kind_label,
    record_schema,
)


def wait(q, what, check):
    """The first item of `q` that passes `check`, within 20 s."""
    end = datetime.datetime.now() + datetime.timedelta(seconds=20)
    while True:
        left = (end - datetime.datetime.now()).total_seconds()
        if left <= 0:
            raise AssertionError(f"no {what} within 20 s")
        try:
            item = q.get(timeout=left)
        except queue.Empty:
            continue
        if check(item):
            return item


class Rows(QueryListener):
    def __init__(self):
        self.seen = queue.Queue()

    def on_change(self, rows):
        self.seen.put(rows)


class States(LiveSessionListener):
    def __init__(self):
        self.seen = queue.Queue()

    def on_state(self, state):
        self.seen.put(state)


def sign_in(folder, server, user, password):
    replica = Replica.open(OpenOptions(folder=folder))
    account = replica.sign_in(SignInOptions(server=server, user=user, password=password))
    assert account.user == user and account.grids == ["g1"], account
    return replica


def main(server, password, work):
    assert kind_label("visit").zh == "走访记录"
    assert choice_label("report", "urgency", "critical").en == "Critical"
    assert field_label("unit", "name").zh == "单位名称"
    assert '"kind":"unit"' in record_schema()
    stranger = Replica.open(OpenOptions(folder=f"{work}/stranger"))
    try:
        stranger.sign_in(SignInOptions(server=server, user="wang", password="not it"))
        raise AssertionError("a wrong password was accepted")
    except GridsyncError as e:
        assert e.code() == ErrorCode.BAD_CREDENTIALS, e
        assert e.message_en() == "wrong username or password", e.message_en()
        print("wrong password:", e.code(), "/", e)

    wang = sign_in(f"{work}/wang", server, "wang", password)
    li = sign_in(f"{work}/li", server, "li", password)

    household = wang.create(
        "household",
        '{"head_name":"张三","household_type":"registered","visit_class":"priority"}',
    )
    visit = wang.create(
        "visit",
        '{"household_id":"%s","visit_type":"routine","started_at":"2026-11-02T09:00:00Z",'
        '"outcome":"met","observations":"独居老人"}' % household.id,
    )
    assert wang.status().unsent_changes > 0
    result = wang.sync_once(SyncOnceOptions(deadline=datetime.timedelta(seconds=60)))
    assert result.complete and result.changes_sent > 0, result

    # li watches households with a live session; wang's next change arrives by itself.
    rows = Rows()
    watching = li.observe_query(RecordQuery(kind="household"), rows)
    states = States()
    session = li.live_session(states)
    session.start()
    wait(states.seen, "a live session", lambda s: s.is_live())
    wait(rows.seen, "the synced household", lambda r: [x.id for x in r] == [household.id])
    assert li.get(visit.id) is not None
    wang.update(household.id, '{"head_name":"张三（户主）"}')
    wang.sync_once(SyncOnceOptions())
    wait(rows.seen, "wang's change", lambda r: r and r[0].title.startswith("张三（户主）"))
    watching.cancel()
    session.stop()
    assert session.state().is_stopped()

    wang.update(household.id, '{"assigned_worker":"wang"}')
    li.update(household.id, '{"assigned_worker":"li"}')
    for replica in (wang, li, wang):
        replica.sync_once(SyncOnceOptions())
    [conflict] = wang.conflicts()
    authors = {v.author for f in conflict.fields for v in f.values}
    assert conflict.record_id == household.id and authors == {"wang", "li"}, conflict
    print("conflict:", [(v.json, v.author) for f in conflict.fields for v in f.values])

    # A volunteer's encrypted replica: a case is not the role's to write, a wrong key is
    # WRONG_KEY (also while the replica is open), and the right key finds everything again.
    key = bytes(range(1, 33))
    folder = f"{work}/zhou"
    zhou = Replica.open(OpenOptions(folder=folder, key=key))
    account = zhou.sign_in(SignInOptions(server=server, user="zhou", password=password))
    assert account.role == "volunteer" and account.writable_kinds == ["patrol"], account
    try:
        zhou.create("case", '{"case_type":"low_income","subject_name":"张三"}')
        raise AssertionError("a volunteer's case was stored")
    except GridsyncError as e:
        assert e.code() == ErrorCode.NOT_ALLOWED, e
        assert e.message_en() == "a volunteer may not write case records", e.message_en()
        print("volunteer's case:", e.code(), "/", e)
    assert zhou.status().unsent_changes == 0
    patrol = zhou.create("patrol", '{"started_at":"2026-11-02T20:00:00Z"}')
    for wrong in (None, bytes(32)):
        try:
            Replica.open(OpenOptions(folder=folder, key=wrong))
            raise AssertionError(f"the replica opened with key {wrong!r}")
        except GridsyncError as e:
            assert e.code() == ErrorCode.WRONG_KEY, e
    again = Replica.open(OpenOptions(folder=folder, key=key))
    assert again.get(patrol.id) is not None
    print("PYTHON BINDINGS OK")


if __name__ == "__main__":
    main(*sys.argv[1:4])
