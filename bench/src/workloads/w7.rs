//! W7 county (issue 13): a PostgreSQL store holding a county's records (by default 200
//! communities × 10 grids × 500 records, one million) while a device of one grid catches up
//! after a week offline. The same catch-up runs first on a store holding only that grid, in the
//! same invocation: the two must cost the same, since a device's catch-up reads its grid's log
//! and nothing else. Then the county office's dashboard (overview, urgent-reports board, monthly
//! report) is timed over HTTP, and the relay's resident memory is compared between the two.
//!
//! The county is loaded through the relay's own accept path in this process (a second relay on
//! the same database, as a county's other relays would be): each grid's records are written on an
//! offline replica in tmpfs, as a grid worker's phone writes them, and its outbox is accepted in
//! batches. Only the device grid's records go through the relay process and real devices.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use gridsync_core::Query;
use gridsync_core::protocol::UpChange;
use gridsync_core::record::Kind;
use gridsync_server::accounts::{AccountStore, Area, Identity, Role};
use gridsync_server::relay::Relay;
use gridsync_server::storage::{KindFilter, PostgresStorage};

use super::{BYTES_NOTE, Ctx, Outcome, say};
use crate::data::{self, Rng, SEED};
use crate::measure::{self, ms};
use crate::meter::Meter;
use crate::setup::{self, PASSWORD, ServerProcess};

/// Grids per community (the seed's communities have 9–37).
const GRIDS_PER_COMMUNITY: usize = 10;
/// Communities per street office.
const COMMUNITIES_PER_STREET: usize = 20;
/// Changes per accepted batch while loading (a device's upload batches are of this order).
const LOAD_BATCH: usize = 250;
/// New records per other grid during the week (the county keeps working).
const WEEK_RECORDS_PER_GRID: usize = 5;
/// Timed dashboard requests per page (after one untimed warm-up).
const PAGE_REQUESTS: usize = 5;
/// The device's grid, in the bench community (the county's first).
const GRID: &str = "grid-w7";

pub async fn run(ctx: &Ctx) -> Result<Outcome> {
    if crate::pg::backend_url().is_none() {
        bail!("W7 runs on PostgreSQL: give --backend postgres (and --pg-url)");
    }
    let communities = ctx.communities.unwrap_or(if ctx.quick { 4 } else { 200 });
    let per_grid = ctx
        .records_per_grid
        .unwrap_or(if ctx.quick { 100 } else { 500 });
    let mut out = Outcome::default();
    out.param("communities", communities as u64);
    out.param("gridsPerCommunity", GRIDS_PER_COMMUNITY as u64);
    out.param("recordsPerGrid", per_grid as u64);
    out.param(
        "countyRecords",
        (communities * GRIDS_PER_COMMUNITY * per_grid) as u64,
    );
    out.param("weekRecordsPerOtherGrid", WEEK_RECORDS_PER_GRID as u64);
    out.note(BYTES_NOTE);
    out.note(
        "the device grid is W1's shape at recordsPerGrid: B creates the records with 3 edits \
         each, A syncs and goes offline, B edits one in ten 5 times and creates 50; the other \
         grids' records (one household in ten, the rest visits, one change each) are loaded \
         through the relay's accept path in the bench process, on the same database",
    );
    out.note(
        "baseline* is the same catch-up on a store holding only the device's grid, in the same \
         run; *Ratio = county / baseline",
    );

    say("w7: baseline: the device's grid alone");
    let baseline = phase(ctx, 0, per_grid).await.context("baseline")?;
    say(format!(
        "w7: the county: {communities} communities × {GRIDS_PER_COMMUNITY} grids × {per_grid} records"
    ));
    let county = phase(ctx, communities, per_grid).await.context("county")?;

    for (key, base, full) in [
        ("catchupMs", baseline.catchup_ms, county.catchup_ms),
        ("bytesReceived", baseline.bytes_down, county.bytes_down),
        ("bytesSent", baseline.bytes_up, county.bytes_up),
        ("relayRssKiB", baseline.rss_kib, county.rss_kib),
        (
            "relayPeakRssKiB",
            baseline.peak_rss_kib,
            county.peak_rss_kib,
        ),
    ] {
        out.metric(&format!("baseline{}", upper_first(key)), base);
        out.metric(key, full);
        if base > 0.0 {
            out.metric(&format!("{key}Ratio"), measure::round3(full / base));
        }
    }
    out.metric("changesReceived", county.changes_received);
    out.metric("loadSecs", measure::round3(county.load_secs));
    out.metric("loadedRecords", county.loaded);
    out.metric("serverDataBytes", county.data_bytes);
    for (page, figure) in &county.pages {
        out.metric(&format!("{page}Ms"), *figure);
    }
    for (page, figure) in &county.first_pages {
        out.metric(&format!("{page}FirstMs"), *figure);
    }
    Ok(out)
}

/// What one phase (baseline or county) measured.
struct Phase {
    catchup_ms: f64,
    bytes_down: f64,
    bytes_up: f64,
    changes_received: u64,
    rss_kib: f64,
    peak_rss_kib: f64,
    load_secs: f64,
    loaded: u64,
    data_bytes: u64,
    /// Median milliseconds of each dashboard page, and of its first (cold) request.
    pages: Vec<(&'static str, f64)>,
    first_pages: Vec<(&'static str, f64)>,
}

/// One store: `communities` others besides the device's grid, loaded before the devices start.
async fn phase(ctx: &Ctx, communities: usize, per_grid: usize) -> Result<Phase> {
    let mut server = ServerProcess::start(&ctx.root)?;
    let grids = vec![GRID.to_string()];
    server.add_grids(&grids)?;
    server.add_worker("worker-a", &grids)?;
    server.add_worker("worker-b", &grids)?;
    server.add_user("county-office", "office", &["bench-county"])?;
    let url = server
        .database_url()
        .ok_or_else(|| anyhow!("W7 needs the relay on PostgreSQL"))?
        .to_string();
    let storage = Arc::new(
        PostgresStorage::connect(&url)
            .await
            .map_err(|e| anyhow!("connect to {url}: {e}"))?,
    );
    let other_grids = add_county_areas(storage.as_ref(), communities).await?;
    let loader = Relay::new(storage.clone(), 64);

    let started = Instant::now();
    let loaded = load(ctx, &loader, &other_grids, per_grid, "load", 0).await?;
    let load_secs = started.elapsed().as_secs_f64();
    if !other_grids.is_empty() {
        say(format!(
            "w7: loaded {loaded} records in {load_secs:.0} s ({:.0}/s)",
            loaded as f64 / load_secs.max(0.001)
        ));
    }

    let meter = Meter::start(server.addr)?;
    let mut b = setup::new_device(&ctx.root, &server.url(), "worker-b").await?;
    let mut a = setup::new_device(&ctx.root, &meter.url(), "worker-a").await?;
    let mut rng = Rng::new(SEED, 7);
    let household = data::create_household(&mut b.replica, &mut rng)?;
    let mut ids = Vec::with_capacity(per_grid);
    for _ in 0..per_grid {
        ids.push(data::create_record(
            &mut b.replica,
            &mut rng,
            Kind::Visit,
            &household,
            3,
        )?);
    }
    setup::sync(&mut b.replica)
        .await
        .context("B's first sync")?;
    setup::sync(&mut a.replica)
        .await
        .context("A's first sync")?;

    say("w7: the week: B edits and creates, the county's other grids write too");
    for id in ids.iter().step_by(10) {
        for e in 0..5 {
            data::edit(&mut b.replica, &mut rng, Kind::Visit, id, 3 + e)?;
        }
    }
    for _ in 0..50 {
        data::create_record(&mut b.replica, &mut rng, Kind::Visit, &household, 0)?;
    }
    setup::sync(&mut b.replica)
        .await
        .context("B's second sync")?;
    load(ctx, &loader, &other_grids, WEEK_RECORDS_PER_GRID, "week", 1).await?;

    say("w7: timed: A reconnects and catches up");
    let before = meter.settle(Duration::from_secs(5)).await;
    let start = Instant::now();
    let report = setup::sync(&mut a.replica).await.context("A's catch-up")?;
    let elapsed = start.elapsed();
    let traffic = meter.settle(Duration::from_secs(5)).await.since(before);
    measure::same_contents(&mut a.replica, &mut b.replica)
        .context("A does not hold B's records")?;
    let visits = a.replica.count(&Query {
        kind: Some(Kind::Visit),
        ..Query::default()
    })?;
    if visits != (per_grid + 50) as u64 {
        bail!("A holds {visits} visits, expected {}", per_grid + 50);
    }

    say("w7: the county office's dashboard over HTTP");
    let cookie = dashboard_login(server.addr, "county-office")?;
    let mut pages = Vec::new();
    let mut first_pages = Vec::new();
    for (name, path) in [
        ("overview", "/"),
        ("reportsBoard", "/reports"),
        ("monthlyReport", "/stats"),
    ] {
        let (first, body) = timed_get(server.addr, path, &cookie)?;
        // The county's figures, not a login page or an error: the last community is named.
        let last = if communities > 0 {
            community_name(communities - 1)
        } else {
            "bench-community".to_string()
        };
        if path == "/" && !body.contains(&last) {
            bail!("the county overview does not name {last}");
        }
        let mut times = Vec::with_capacity(PAGE_REQUESTS);
        for _ in 0..PAGE_REQUESTS {
            times.push(timed_get(server.addr, path, &cookie)?.0);
        }
        pages.push((name, measure::round3(measure::median(&mut times))));
        first_pages.push((name, measure::round3(first)));
    }

    Ok(Phase {
        catchup_ms: ms(elapsed),
        bytes_down: traffic.down as f64,
        bytes_up: traffic.up as f64,
        changes_received: report.stats.changes_received,
        rss_kib: server.rss_kib()? as f64,
        peak_rss_kib: server.peak_rss_kib()? as f64,
        load_secs,
        loaded,
        data_bytes: server.data_bytes(),
        pages,
        first_pages,
    })
}

fn community_name(c: usize) -> String {
    format!("w7社区{c:03}")
}

/// Streets, communities and their grids under the bench county; returns the grids.
async fn add_county_areas(store: &PostgresStorage, communities: usize) -> Result<Vec<String>> {
    let mut grids = Vec::new();
    let area = |id: String, parent: &str, level: &str, name: String| Area {
        id,
        parent_id: Some(parent.to_string()),
        level: level.to_string(),
        name,
    };
    let add = |a: Area| async move {
        store
            .add_area(a)
            .await
            .map_err(|e| anyhow!("add area: {e}"))
    };
    for c in 0..communities {
        let street = format!("w7-street-{:02}", c / COMMUNITIES_PER_STREET);
        if c % COMMUNITIES_PER_STREET == 0 {
            add(area(
                street.clone(),
                "bench-county",
                "street",
                format!("w7街道{:02}", c / COMMUNITIES_PER_STREET),
            ))
            .await?;
        }
        let community = format!("w7-community-{c:03}");
        add(area(
            community.clone(),
            &street,
            "community",
            community_name(c),
        ))
        .await?;
        for g in 0..GRIDS_PER_COMMUNITY {
            let grid = format!("w7-grid-{c:03}-{g:02}");
            add(area(
                grid.clone(),
                &community,
                "grid",
                format!("{}第{}网格", community_name(c), g + 1),
            ))
            .await?;
            grids.push(grid);
        }
    }
    Ok(grids)
}

/// Writes `per_grid` records in each grid on an offline replica (one household in ten, the
/// rest visits of it) and has `relay` accept them; returns how many it accepted. Replicas are
/// written on one thread while the relay accepts the previous grid's.
async fn load(
    ctx: &Ctx,
    relay: &Relay,
    grids: &[String],
    per_grid: usize,
    label: &str,
    stream: u64,
) -> Result<u64> {
    if grids.is_empty() {
        return Ok(0);
    }
    let scratch = ctx.live_dir.clone().unwrap_or_else(|| {
        let shm = Path::new("/dev/shm");
        if shm.is_dir() {
            shm.to_path_buf()
        } else {
            ctx.root.clone()
        }
    });
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<(String, String, Vec<UpChange>)>>(2);
    let grids_owned = grids.to_vec();
    let writer = tokio::task::spawn_blocking(move || {
        for (i, grid) in grids_owned.iter().enumerate() {
            let made = write_grid(&scratch, grid, per_grid, stream * 1_000_000 + i as u64);
            let failed = made.is_err();
            if tx.blocking_send(made).is_err() || failed {
                break;
            }
        }
    });
    let mut accepted = 0u64;
    let mut done = 0usize;
    let started = Instant::now();
    let mut accepting = Duration::ZERO;
    while let Some(made) = rx.recv().await {
        let (grid, actor, changes) = made?;
        let writer = Identity {
            user_id: format!("loader-{grid}"),
            username: format!("loader-{grid}"),
            display_name: format!("loader-{grid}"),
            role: Role::GridWorker,
            device_id: format!("loader-{grid}"),
            grids: vec![grid.clone()],
            former_grids: vec![],
            actors: vec![actor],
            readable_kinds: KindFilter::All,
        };
        let mut chunks = changes;
        while !chunks.is_empty() {
            let rest = chunks.split_off(chunks.len().min(LOAD_BATCH));
            let n = chunks.len();
            let t = Instant::now();
            let (refused, _) = relay
                .accept(&writer, chunks)
                .await
                .map_err(|e| anyhow!("accept in {grid}: {e}"))?;
            accepting += t.elapsed();
            if let Some(r) = refused.first() {
                bail!("the relay refused a loaded change in {grid}: {r:?}");
            }
            accepted += n as u64;
            chunks = rest;
        }
        done += 1;
        if done.is_multiple_of(100) {
            say(format!(
                "w7: {label}: {done} of {} grids, {accepted} changes, {:.0} s ({:.0} s accepting)",
                grids.len(),
                started.elapsed().as_secs_f64(),
                accepting.as_secs_f64()
            ));
        }
    }
    writer.await.context("replica writer")?;
    if done != grids.len() {
        bail!("{label}: only {done} of {} grids written", grids.len());
    }
    Ok(accepted)
}

/// One grid's records on a fresh offline replica under `scratch`: (grid, actor, its outbox).
fn write_grid(
    scratch: &Path,
    grid: &str,
    per_grid: usize,
    stream: u64,
) -> Result<(String, String, Vec<UpChange>)> {
    let dir = setup::device_dir(scratch)?;
    let username = format!("loader-{grid}");
    let mut replica = setup::offline_replica(dir.path(), &username, &[grid.to_string()])?;
    let mut rng = Rng::new(SEED, 100 + stream);
    let mut household = String::new();
    for i in 0..per_grid {
        if i % 10 == 0 {
            household = data::create_household(&mut replica, &mut rng)?;
        } else {
            data::create_record(&mut replica, &mut rng, Kind::Visit, &household, 0)?;
        }
    }
    let actor = replica.actor_hex();
    let changes = replica
        .outbox_batch(usize::MAX, usize::MAX)?
        .into_iter()
        .map(UpChange::from)
        .collect();
    drop(replica);
    Ok((grid.to_string(), actor, changes))
}

fn upper_first(key: &str) -> String {
    let mut chars = key.chars();
    match chars.next() {
        Some(c) => c.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

// ------------------------------------------------------------------ the dashboard over HTTP

/// One HTTP/1.1 exchange on 127.0.0.1: (status line, headers, body).
fn exchange(addr: SocketAddr, request: &str) -> Result<(String, Vec<String>, String)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    s.set_read_timeout(Some(Duration::from_secs(60)))?;
    s.write_all(request.as_bytes())?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| anyhow!("no HTTP answer"))?;
    let mut lines = head.lines();
    let status = lines.next().unwrap_or_default().to_string();
    Ok((
        status,
        lines.map(str::to_string).collect(),
        body.to_string(),
    ))
}

/// The `name=value` of every Set-Cookie header.
fn set_cookies(headers: &[String]) -> Vec<String> {
    headers
        .iter()
        .filter_map(|h| {
            let (name, value) = h.split_once(':')?;
            name.eq_ignore_ascii_case("set-cookie")
                .then(|| value.trim().split(';').next().unwrap_or("").to_string())
        })
        .collect()
}

/// Signs in to the dashboard as a browser does (login form, its token, the password) and
/// returns the Cookie header that carries the session.
fn dashboard_login(addr: SocketAddr, username: &str) -> Result<String> {
    let (status, headers, body) = exchange(
        addr,
        &format!("GET /login HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"),
    )?;
    if !status.contains("200") {
        bail!("GET /login: {status}");
    }
    let form_cookies = set_cookies(&headers).join("; ");
    let token = body
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .ok_or_else(|| anyhow!("the login page has no form token"))?;
    let form = format!("username={username}&password={PASSWORD}&csrf={token}&next=%2F");
    let (status, headers, _) = exchange(
        addr,
        &format!(
            "POST /login HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nCookie: {form_cookies}\r\n\
             Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{form}",
            form.len()
        ),
    )?;
    let session = set_cookies(&headers);
    if !status.contains("303") && !status.contains("302") || session.is_empty() {
        bail!("dashboard sign-in as {username}: {status}");
    }
    Ok(session.join("; "))
}

/// GET `path` with the session cookie: (milliseconds to the whole answer, body).
fn timed_get(addr: SocketAddr, path: &str, cookie: &str) -> Result<(f64, String)> {
    let start = Instant::now();
    let (status, _, body) = exchange(
        addr,
        &format!(
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nCookie: {cookie}\r\n\r\n"
        ),
    )?;
    let elapsed = start.elapsed();
    if !status.contains("200") {
        bail!("GET {path}: {status}");
    }
    Ok((ms(elapsed), body))
}
