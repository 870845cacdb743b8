//! A device that writes as fast as it can and says so: it prints each record's id the moment
//! `create` returns. The crash tests kill it with SIGKILL at random moments and then check that
//! every printed id is in the replica.

use std::io::Write;

use gridsync_core::record::Kind;

fn main() -> anyhow::Result<()> {
    let dir = std::env::args()
        .nth(1)
        .ok_or_else(|| anyhow::anyhow!("usage: gridsync-test-writer REPLICA_DIR"))?;
    let mut replica = gridsync_core::Replica::open(&dir)?;
    if replica.identity().is_err() {
        gridsync_e2e::enrol_offline(&mut replica, "writer", &["g1"])?;
    }
    let stdout = std::io::stdout();
    for n in 0u64.. {
        let fields = serde_json::json!({
            "head_name": format!("住户{n}"),
            "household_type": "registered",
            "notes": "夜间写入测试".repeat(10),
        });
        let id = match fields {
            serde_json::Value::Object(map) => replica.create(Kind::Household, map)?.id,
            _ => unreachable!("a JSON object literal"),
        };
        let mut out = stdout.lock();
        writeln!(out, "{id}")?;
        out.flush()?;
    }
    Ok(())
}
