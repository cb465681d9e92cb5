//! Frame time of the Topics and Consumer groups screens with 2,000 topics and 500 groups, and
//! the memory of the app holding them.
//!
//! A real `runnel` (the release build next to this benchmark if there is one, else the debug
//! build, or `RUNNEL_BIN`) gets 2,000 one-partition topics with a few records each (so each
//! has a size), a third of them with their own retention, and 500 groups with committed
//! offsets (so they have lag). The real [`AdminApp`] connects to it
//! like a user would, inside an `egui_kittest` harness, and once both lists are loaded each
//! phase times `FRAMES_PER_PHASE` (default 300) calls of `Harness::step` — one full egui pass of the whole window —
//! and, separately, tessellating the shapes that pass produced; frames start every 16.7 ms,
//! as at 60 Hz.
//!
//! What is measured: the app's drawing code (all panels, the virtualised tables, the detail
//! views, the lag chart), egui's layout, text shaping and hit testing, the AccessKit tree
//! kittest builds every pass (the real app builds one only when an accessibility client asks),
//! the wait for the model lock while the background refresh stores its results (it runs at
//! the default 5 s interval throughout), and — in its own column — tessellation into meshes.
//! What is not: uploading those meshes to the GPU and painting them, the window system and
//! vsync. The numbers are reported, never asserted.
//!
//! `cargo bench -p runnel-admin-gui --bench frames`.

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use egui_kittest::Harness;
use egui_kittest::kittest::{NodeT, Queryable};
use runnel_admin::app::{AdminApp, Screen};
use runnel_admin::worker::Timing;
use runnel_client::{Client, ClientConfig, NewTopic, OutRecord, PartitionBatch, Producer};
use runnel_tests::{Broker, BrokerOptions, runnel_bin};

const TOPICS: usize = 2_000;
const GROUPS: usize = 500;
/// Topics each group has committed offsets on.
const TOPICS_PER_GROUP: usize = 4;
/// Concurrent clients while seeding.
const SEEDERS: usize = 8;
/// Frames are paced like a display's (60 Hz), so a phase of 300 frames spans 5 s and
/// includes a background refresh storing its results.
const FRAME_INTERVAL: Duration = Duration::from_micros(16_667);
/// The size of `runnel-admin`'s window (admin-gui/src/main.rs).
const WINDOW: egui::Vec2 = egui::vec2(1200.0, 800.0);

fn topic_name(i: usize) -> String {
    format!("bench-topic-{i:04}")
}

fn group_name(i: usize) -> String {
    format!("bench-group-{i:03}")
}

/// Records in topic `i`: 1 to 20.
fn records_in(i: usize) -> i64 {
    (i % 20) as i64 + 1
}

/// Topic `i`'s own retention, for a third of the topics (the rest keep the broker's 7 days):
/// a time limit, a size limit, or both, so the Retention column shows every kind of label.
fn retention_of(i: usize) -> Vec<(String, String)> {
    let hours = ((i % 48) + 1) * 3_600_000;
    let bytes = ((i % 8) + 1) << 27;
    match i % 9 {
        0 => vec![("retention.ms".into(), hours.to_string())],
        3 => vec![("retention.bytes".into(), bytes.to_string())],
        6 => vec![
            ("retention.ms".into(), "-1".into()),
            ("retention.bytes".into(), bytes.to_string()),
        ],
        _ => Vec::new(),
    }
}

fn main() -> Result<()> {
    let frames: usize = match std::env::var("FRAMES_PER_PHASE") {
        Ok(v) => v.parse().context("FRAMES_PER_PHASE")?,
        Err(_) => 300,
    };
    let bin = runnel_bin()?;
    let broker = Broker::start(BrokerOptions::new().binary(&bin))?;
    let bootstrap = broker.bootstrap();
    eprintln!("broker {} at {bootstrap}", bin.display());
    let rss_before = Rss::now()?;
    let load_before = load_average();

    let started = Instant::now();
    tokio::runtime::Runtime::new()?.block_on(seed(&bootstrap))?;
    let seeded = started.elapsed();
    eprintln!("seeded {TOPICS} topics and {GROUPS} groups in {seeded:.1?}");

    let mut report = Report::default();
    // The default 5 s refresh, as an operator has it.
    let mut harness = support::harness(support::app(Timing::default())?, WINDOW);
    support::connect(&mut harness, "bench", &bootstrap);
    let started = Instant::now();
    // Retention comes in the same refresh as the sizes; a broker without DescribeLogDirs (an
    // older runnel) has no sizes, which the report says.
    wait_for(
        &mut harness,
        "all topics (with retention) and groups in the lists",
        |h| {
            let model = h.state().worker.model();
            model.clusters.values().any(|v| {
                v.topics.len() >= TOPICS
                    && v.groups.len() >= GROUPS
                    && v.topics.iter().all(|t| t.retention.ms.is_some())
            })
        },
    )?;
    let loaded = started.elapsed();
    let rss_loaded = Rss::now()?;
    let sized = {
        let model = harness.state().worker.model();
        model
            .clusters
            .values()
            .map(|v| v.topics.iter().filter(|t| t.size.is_some()).count())
            .max()
            .unwrap_or(0)
    };

    for screen in [Screen::Topics, Screen::Groups] {
        measure_screen(&mut harness, screen, frames, &mut report)?;
    }
    let rss_end = Rss::now()?;
    let broker_rss = broker_rss(&harness);
    drop(harness);
    drop(broker);

    println!();
    println!(
        "runnel-admin frame times: {TOPICS} topics (1 partition each), {GROUPS} consumer groups \
         ({TOPICS_PER_GROUP} committed partitions each), window {}x{} points, {frames} frames \
         per phase at 60 Hz",
        WINDOW.x, WINDOW.y
    );
    println!("broker: {}", bin.display());
    println!(
        "load average (1, 5, 15 min) at start: {load_before}; at the end: {} — other jobs on \
         the machine show up in the wall-time tails, not in the cpu columns",
        load_average()
    );
    println!("seeding took {seeded:.1?}; the first complete refresh in the app took {loaded:.1?}");
    println!(
        "topics with a size (DescribeLogDirs) and retention shown: {sized} of {TOPICS}; a third \
         have their own retention"
    );
    println!();
    report.print();
    println!();
    println!("memory of this process (the app, its worker runtime and the kittest harness):");
    println!("  at start:              {rss_before}");
    println!("  lists loaded:          {rss_loaded}");
    println!("  after all phases:      {rss_end}");
    if let Some(b) = broker_rss {
        println!(
            "  (the broker's own RSS, as it reports it: {:.1} MiB)",
            mib(b)
        );
    }
    println!();
    println!(
        "pass = Harness::step(): one egui pass of the whole window (the app's panels, layout, text \
         shaping, hit testing) plus the AccessKit tree kittest builds each pass, and the wait for \
         the model lock while the background refresh (every 5 s) stores its results. \
         cpu = the UI thread's CPU time in the same passes (wall time minus time the thread waited \
         or was preempted, e.g. by other jobs on the machine); cpu@max = that of the slowest pass. \
         tess = tessellating that pass's shapes into meshes (Context::tessellate); both = pass \
         + tess of the same frame. refreshes = \
         background refreshes that stored new data during the phase. Not measured: \
         uploading and painting the meshes on the GPU, the window system, vsync. RSS has no GPU \
         driver or texture memory in it (kittest renders nothing)."
    );
    Ok(())
}

/// The topics and groups, created with several clients at once.
async fn seed(bootstrap: &str) -> Result<()> {
    let clients: Vec<Client> = (0..SEEDERS)
        .map(|i| Client::new(ClientConfig::new(bootstrap, format!("frames-bench-{i}"))))
        .collect();
    let mut tasks = Vec::new();
    for (s, client) in clients.iter().enumerate() {
        let client = client.clone();
        tasks.push(tokio::spawn(async move {
            for i in (s..TOPICS).step_by(SEEDERS) {
                client
                    .create_topic(&NewTopic {
                        name: topic_name(i),
                        partitions: 1,
                        replication_factor: -1,
                        configs: retention_of(i),
                    })
                    .await?;
            }
            anyhow::Ok(())
        }));
    }
    join(tasks).await?;

    let producer = Producer::new(clients[0].clone(), Default::default());
    let batches = (0..TOPICS)
        .map(|i| PartitionBatch {
            topic: topic_name(i),
            partition: 0,
            records: (0..records_in(i))
                .map(|n| OutRecord {
                    key: Some(Bytes::from(format!("k{n}"))),
                    value: Some(Bytes::from(format!("{{\"n\":{n}}}"))),
                    headers: Vec::new(),
                    timestamp_ms: 0,
                })
                .collect(),
        })
        .collect();
    for (i, r) in producer.send(batches).await.into_iter().enumerate() {
        r.with_context(|| format!("producing to {}", topic_name(i)))?;
    }

    let mut tasks = Vec::new();
    for (s, client) in clients.iter().enumerate() {
        let client = client.clone();
        tasks.push(tokio::spawn(async move {
            for g in (s..GROUPS).step_by(SEEDERS) {
                // Half-way through each of its topics: every group has some lag.
                let offsets: Vec<(String, i32, i64)> = (0..TOPICS_PER_GROUP)
                    .map(|k| {
                        let t = (g * TOPICS_PER_GROUP + k) % TOPICS;
                        (topic_name(t), 0, records_in(t) / 2)
                    })
                    .collect();
                client.commit_offsets(&group_name(g), &offsets).await?;
            }
            anyhow::Ok(())
        }));
    }
    join(tasks).await
}

async fn join(tasks: Vec<tokio::task::JoinHandle<Result<()>>>) -> Result<()> {
    for t in tasks {
        t.await??;
    }
    Ok(())
}

/// Steps the UI until `probe` holds (loading 2,000 topics takes a while).
fn wait_for(
    harness: &mut Harness<'_, AdminApp>,
    what: &str,
    probe: impl FnMut(&Harness<'_, AdminApp>) -> bool,
) -> Result<()> {
    support::wait_for(harness, what, Duration::from_secs(180), probe)
}

fn has_label(h: &Harness<'_, AdminApp>, text: &str) -> bool {
    support::count_label(h, text) > 0
}

/// The phases of one screen: the top of the list, the middle of the list, scrolling through
/// it (a wheel event every frame), and a selected row with its detail below the list.
fn measure_screen(
    harness: &mut Harness<'_, AdminApp>,
    screen: Screen,
    frames: usize,
    report: &mut Report,
) -> Result<()> {
    let (prefix, middle_index, name) = match screen {
        Screen::Topics => ("bench-topic-", TOPICS / 2, "topics"),
        _ => ("bench-group-", GROUPS / 2, "groups"),
    };
    let (first, middle) = match screen {
        Screen::Topics => (topic_name(0), topic_name(middle_index)),
        _ => (group_name(0), group_name(middle_index)),
    };
    harness.state_mut().screen = screen;
    wait_for(harness, &format!("{first} on the {name} screen"), |h| {
        has_label(h, &first)
    })?;
    report.add(format!("{name}: top of the list"), time(harness, frames));

    // Scroll with the wheel over the list until the middle row shows.
    let over_list = harness
        .query_all_by_label(&first)
        .next()
        .context("the first row")?
        .rect()
        .center();
    harness.hover_at(over_list);
    scroll_to(harness, prefix, middle_index)?;
    report.add(format!("{name}: middle of the list"), time(harness, frames));

    let mut samples = Samples::default();
    let before = visible_rows(harness, prefix).into_iter().min();
    for i in 0..frames {
        // A row per frame, down for the first half, back up for the second.
        harness.event(wheel(if i < frames / 2 { -20.0 } else { 20.0 }));
        samples.extend(time(harness, 1));
        if i + 1 == frames / 2 && visible_rows(harness, prefix).into_iter().min() <= before {
            bail!("the {name} list did not scroll");
        }
    }
    report.add(format!("{name}: scrolling (wheel every frame)"), samples);
    scroll_to(harness, prefix, middle_index)?;

    // Select the middle row: its detail (partitions and configs, or partitions, members,
    // lag chart and reset form) loads below the list.
    let detail = match screen {
        Screen::Topics => format!("Topic {middle}"),
        _ => format!("Group {middle}"),
    };
    harness
        .query_all_by_label(&middle)
        .next()
        .context("the middle row")?
        .click();
    wait_for(harness, &format!("the detail of {middle}"), |h| {
        has_label(h, &detail)
    })?;
    report.add(
        format!("{name}: a row selected, detail shown"),
        time(harness, frames),
    );
    Ok(())
}

/// Turns the wheel over the list until row `target` is shown once the scrolling settled.
fn scroll_to(harness: &mut Harness<'_, AdminApp>, prefix: &str, target: usize) -> Result<()> {
    /// The tables' row height (admin-gui/src/panels).
    const ROW: f32 = 20.0;
    for _ in 0..100 {
        harness.run_steps(10);
        let rows = visible_rows(harness, prefix);
        let (Some(&low), Some(&high)) = (rows.iter().min(), rows.iter().max()) else {
            bail!("no {prefix}* rows shown");
        };
        // Not the first or last row shown, which may be cut off at the edge.
        if low < target && target < high {
            return Ok(());
        }
        let dy = if target >= high {
            -((target - high) as f32 + 3.0) * ROW
        } else {
            ((low - target) as f32 + 3.0) * ROW
        };
        harness.event(wheel(dy));
    }
    bail!("could not scroll to row {target} of the {prefix}* list")
}

/// The numbers of the `prefix`NUMBER rows shown now.
fn visible_rows(harness: &Harness<'_, AdminApp>, prefix: &str) -> Vec<usize> {
    harness
        .query_all_by_label_contains(prefix)
        .filter_map(|n| {
            n.accesskit_node()
                .label()?
                .strip_prefix(prefix)?
                .parse()
                .ok()
        })
        .collect()
}

fn wheel(dy: f32) -> egui::Event {
    egui::Event::MouseWheel {
        unit: egui::MouseWheelUnit::Point,
        delta: egui::vec2(0.0, dy),
        phase: egui::TouchPhase::Move,
        source: egui::MouseWheelSource::Wheel,
        modifiers: egui::Modifiers::NONE,
    }
}

/// Times `frames` passes, and the tessellation of each, one every [`FRAME_INTERVAL`].
fn time(harness: &mut Harness<'_, AdminApp>, frames: usize) -> Samples {
    let mut s = Samples::default();
    for _ in 0..frames {
        let t = Instant::now();
        let next = t + FRAME_INTERVAL;
        let cpu = thread_cpu_time();
        harness.step();
        s.pass.push(t.elapsed());
        s.pass_cpu.push(thread_cpu_time().saturating_sub(cpu));
        let output = harness.output();
        let (shapes, ppp) = (output.shapes.clone(), output.pixels_per_point);
        let t = Instant::now();
        let primitives = harness.ctx.tessellate(shapes, ppp);
        s.tessellate.push(t.elapsed());
        std::hint::black_box(primitives);
        let refreshed = last_refresh(harness);
        if refreshed != s.last_refresh {
            s.refreshes += usize::from(s.last_refresh.is_some());
            s.last_refresh = refreshed;
        }
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
    }
    s
}

/// When the shown cluster's last refresh succeeded.
fn last_refresh(harness: &Harness<'_, AdminApp>) -> Option<Instant> {
    let app = harness.state();
    let id = app.current()?;
    app.worker.model().clusters.get(&id)?.last_ok
}

/// CPU time this thread has used: unlike wall time, it does not grow while other processes
/// have the CPU.
fn thread_cpu_time() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime only writes the timespec we pass, which lives for the call.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return Duration::ZERO;
    }
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

#[derive(Debug, Default)]
struct Samples {
    pass: Vec<Duration>,
    /// The same passes' CPU time on the UI thread.
    pass_cpu: Vec<Duration>,
    tessellate: Vec<Duration>,
    /// Background refreshes that stored their results during these frames.
    refreshes: usize,
    last_refresh: Option<Instant>,
}

impl Samples {
    fn extend(&mut self, other: Samples) {
        self.pass.extend(other.pass);
        self.pass_cpu.extend(other.pass_cpu);
        self.tessellate.extend(other.tessellate);
        if other.last_refresh != self.last_refresh {
            self.refreshes += usize::from(self.last_refresh.is_some()) + other.refreshes;
            self.last_refresh = other.last_refresh;
        }
    }
}

#[derive(Debug, Default)]
struct Report {
    phases: Vec<(String, Samples)>,
}

impl Report {
    fn add(&mut self, phase: String, samples: Samples) {
        eprintln!("measured {phase}");
        self.phases.push((phase, samples));
    }

    fn print(&self) {
        const COLUMNS: [&str; 9] = [
            "pass p50", "pass p99", "pass max", "cpu@max", "cpu p50", "cpu p99", "tess p50",
            "tess p99", "both p99",
        ];
        print!("{:<40}", "phase");
        for c in COLUMNS {
            print!(" {c:>10}");
        }
        println!(" {:>9}", "refreshes");
        for (phase, s) in &self.phases {
            let both: Vec<Duration> = s
                .pass
                .iter()
                .zip(&s.tessellate)
                .map(|(a, b)| *a + *b)
                .collect();
            let cpu_of_slowest = s
                .pass
                .iter()
                .zip(&s.pass_cpu)
                .max_by_key(|(wall, _)| **wall)
                .map_or(Duration::ZERO, |(_, cpu)| *cpu);
            print!("{phase:<40}");
            for d in [
                quantile(&s.pass, 0.5),
                quantile(&s.pass, 0.99),
                quantile(&s.pass, 1.0),
                cpu_of_slowest,
                quantile(&s.pass_cpu, 0.5),
                quantile(&s.pass_cpu, 0.99),
                quantile(&s.tessellate, 0.5),
                quantile(&s.tessellate, 0.99),
                quantile(&both, 0.99),
            ] {
                print!(" {:>10}", ms(d));
            }
            println!(" {:>9}", s.refreshes);
        }
    }
}

/// The smallest sample with at least `q` of the samples at or below it.
fn quantile(samples: &[Duration], q: f64) -> Duration {
    let mut sorted = samples.to_vec();
    sorted.sort();
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len().max(1));
    sorted.get(rank - 1).copied().unwrap_or_default()
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / 1_048_576.0
}

/// `/proc/loadavg`'s first three fields.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

/// The broker's RSS as it reports it (`runnel.rss.bytes`, shown on the Brokers screen).
fn broker_rss(harness: &Harness<'_, AdminApp>) -> Option<u64> {
    let model = harness.state().worker.model();
    model
        .clusters
        .values()
        .flat_map(|v| v.brokers.values())
        .find_map(|b| b.stats.get("runnel.rss.bytes")?.parse().ok())
}

/// Current (`VmRSS`) and peak (`VmHWM`) resident memory of this process.
struct Rss {
    current_kib: u64,
    peak_kib: u64,
}

impl Rss {
    fn now() -> Result<Rss> {
        let status = std::fs::read_to_string("/proc/self/status").context("/proc/self/status")?;
        let field = |name: &str| -> Result<u64> {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
                .with_context(|| format!("{name} in /proc/self/status"))
        };
        Ok(Rss {
            current_kib: field("VmRSS:")?,
            peak_kib: field("VmHWM:")?,
        })
    }
}

impl std::fmt::Display for Rss {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "RSS {:.1} MiB, peak {:.1} MiB",
            mib(self.current_kib * 1024),
            mib(self.peak_kib * 1024)
        )
    }
}
