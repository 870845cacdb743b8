//! W1 catch-up after being offline.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use gridsync_core::Query;
use gridsync_core::record::Kind;

use super::{BYTES_NOTE, CPU_NOTE, Ctx, Outcome, say};
use crate::data::{self, Rng, SEED};
use crate::measure::{self, ms, round3};
use crate::meter::Meter;
use crate::setup::{self, ServerProcess};

pub async fn run(ctx: &Ctx) -> Result<Outcome> {
    let n = ctx.records.unwrap_or(if ctx.quick { 500 } else { 2000 });
    let every = 10;
    let edits_each = 5;
    let new_records = 50;
    let history = 3;
    let m = n.div_ceil(every);

    let mut out = Outcome::default();
    out.param("n", n as u64);
    out.param("m", m as u64);
    out.param("editsPerEditedRecord", edits_each as u64);
    out.param("newRecords", new_records as u64);
    out.param("editsOfHistory", history as u64);
    out.param("record", "visit");
    out.param(
        "households",
        "one, created first by B (a visit must name a household the device holds); \
         A and B are two grid-worker accounts of the same grid",
    );
    out.note(BYTES_NOTE);
    out.note(CPU_NOTE);
    out.note("the 50 new records are created without further edits");

    let mut server = ServerProcess::start(&ctx.root)?;
    let grids = vec!["grid-w1".to_string()];
    server.add_grids(&grids)?;
    server.add_worker("worker-a", &grids)?;
    server.add_worker("worker-b", &grids)?;
    let meter = Meter::start(server.addr)?;
    let mut b = setup::new_device(&ctx.root, &server.url(), "worker-b").await?;
    let mut a = setup::new_device(&ctx.root, &meter.url(), "worker-a").await?;

    say(format!(
        "w1: B creates {n} records with {history} edits each"
    ));
    let mut rng = Rng::new(SEED, 1);
    let household = data::create_household(&mut b.replica, &mut rng)?;
    let mut ids = Vec::with_capacity(n);
    for _ in 0..n {
        ids.push(data::create_record(
            &mut b.replica,
            &mut rng,
            Kind::Visit,
            &household,
            history,
        )?);
    }
    out.param(
        "recordJsonBytes",
        data::typical_json_bytes(Kind::Visit, &household, "worker-b"),
    );
    out.param(
        "storedRecordJsonBytes",
        data::stored_json_bytes(&mut b.replica, &ids[0])?,
    );
    setup::sync(&mut b.replica)
        .await
        .context("B's first sync")?;
    say("w1: A syncs everything, then goes offline");
    setup::sync(&mut a.replica)
        .await
        .context("A's first sync")?;

    say(format!(
        "w1: B edits {m} records {edits_each} times each and creates {new_records}"
    ));
    for id in ids.iter().step_by(every) {
        for e in 0..edits_each {
            data::edit(&mut b.replica, &mut rng, Kind::Visit, id, history + e)?;
        }
    }
    for _ in 0..new_records {
        data::create_record(&mut b.replica, &mut rng, Kind::Visit, &household, 0)?;
    }
    // What A will need, as Automerge changes before framing and compression.
    let unsent = b.replica.outbox_batch(usize::MAX, usize::MAX)?;
    out.param("catchupChanges", unsent.len() as u64);
    out.param(
        "catchupRawChangeBytes",
        unsent.iter().map(|e| e.bytes.len() as u64).sum::<u64>(),
    );
    setup::sync(&mut b.replica)
        .await
        .context("B's second sync")?;

    say("w1: timed: A reconnects and catches up");
    let before = meter.settle(Duration::from_secs(5)).await;
    let client_cpu0 = measure::self_cpu_secs()? - meter.cpu_secs();
    let server_cpu0 = server.cpu_secs()?;
    let start = Instant::now();
    let report = setup::sync(&mut a.replica).await.context("A's catch-up")?;
    let elapsed = start.elapsed();
    let client_cpu = measure::self_cpu_secs()? - meter.cpu_secs() - client_cpu0;
    let server_cpu = server.cpu_secs()? - server_cpu0;
    let traffic = meter.settle(Duration::from_secs(5)).await.since(before);

    let compared = measure::same_contents(&mut a.replica, &mut b.replica)
        .context("A does not hold B's records")?;
    let visits = a.replica.count(&Query {
        kind: Some(Kind::Visit),
        ..Query::default()
    })?;
    if visits != (n + new_records) as u64 {
        bail!("A holds {visits} visits, expected {}", n + new_records);
    }
    out.param("verifiedRecords", compared as u64);

    out.metric("catchupMs", ms(elapsed));
    out.metric("bytesSent", traffic.up);
    out.metric("bytesReceived", traffic.down);
    out.metric("frameBytesSent", report.bytes_sent);
    out.metric("frameBytesReceived", report.bytes_received);
    out.metric("messagesSent", report.messages_sent);
    out.metric("messagesReceived", report.messages_received);
    out.metric("messages", report.messages_sent + report.messages_received);
    out.metric("connections", traffic.connections);
    out.metric("changesReceived", report.stats.changes_received);
    out.metric("clientCpuSecs", round3(client_cpu));
    out.metric("serverCpuSecs", round3(server_cpu));
    Ok(out)
}
