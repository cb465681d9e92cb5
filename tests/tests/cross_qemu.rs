//! The broker cross-built for the Raspberry Pi, run under qemu-user, with real clients.
//!
//! For each Pi target, `deploy/cross-build.sh` (the documented build command, so the script
//! itself is tested) builds `runnel` with the `cross-test` profile into `target/cross-test`
//! (its own target directory: no lock fights with the host build). The harness starts that
//! binary through `qemu-aarch64` / `qemu-arm` on a free port, rdkafka on the host produces a
//! few MB through every codec whose C code was cross-compiled (none, lz4, zstd), consumes it
//! back and compares it byte for byte, then the broker is stopped with SIGTERM and restarted on
//! the same LMDB file, which must still hold every record.
//!
//! On armv7 (32-bit) the broker runs with the default map sizing (no `--max-disk-bytes`):
//! the budget must be capped to what a 32-bit address space can map, and the map must grow
//! past its initial size while records keep arriving.
//!
//! `scripts/test-all.sh` installs the cross toolchains, qemu-user and the Rust targets. Where
//! they are missing the tests are skipped with the reason printed on stderr, except under
//! `CI=true`, where a missing toolchain is a broken install step and fails the test.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail, ensure};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::FutureRecord;
use runnel_tests::clients::{self, Record};
use runnel_tests::{Broker, BrokerOptions};

/// The profile `deploy/cross-build.sh` builds with here (see the root Cargo.toml).
const PROFILE: &str = "cross-test";
/// qemu emulates the target CPU (and the cross-test profile optimises little): allow time.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(90);
const CONSUME_TIMEOUT: Duration = Duration::from_secs(180);
/// Records per codec; with the value sizes below, about 1 MB per codec once compressed.
const RECORDS_PER_CODEC: usize = 120;
const CODECS: [&str; 3] = ["none", "lz4", "zstd"];
/// `MAX_MAP_32BIT` in broker/src/log/lmdb/budget.rs.
const MAX_MAP_32BIT: u64 = 1024 * 1024 * 1024;
const MIB: u64 = 1024 * 1024;
/// Values of the map growth test on armv7.
const GROWTH_VALUE_BYTES: u64 = 512 * 1024;

/// A target of `deploy/cross-build.sh` and how to run its binaries here.
struct Target {
    triple: &'static str,
    gcc: &'static str,
    qemu: &'static str,
    /// The target's libc and dynamic loader, for `qemu-* -L`.
    sysroot: &'static str,
    packages: &'static str,
}

const AARCH64: Target = Target {
    triple: "aarch64-unknown-linux-gnu",
    gcc: "aarch64-linux-gnu-gcc",
    qemu: "qemu-aarch64",
    sysroot: "/usr/aarch64-linux-gnu",
    packages: "gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user",
};

const ARMV7: Target = Target {
    triple: "armv7-unknown-linux-gnueabihf",
    gcc: "arm-linux-gnueabihf-gcc",
    qemu: "qemu-arm",
    sysroot: "/usr/arm-linux-gnueabihf",
    packages: "gcc-arm-linux-gnueabihf libc6-dev-armhf-cross qemu-user",
};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(program).is_file()))
}

/// Why `target` cannot be built and run here, if it cannot.
fn missing_tools(target: &Target) -> Option<String> {
    let mut missing: Vec<String> = [target.gcc, target.qemu, "file", "cargo"]
        .into_iter()
        .filter(|program| !on_path(program))
        .map(str::to_owned)
        .collect();
    if !Path::new(target.sysroot).join("lib").is_dir() {
        missing.push(format!("{}/lib", target.sysroot));
    }
    if !on_path("rustup") {
        let sysroot = Command::new("rustc").args(["--print", "sysroot"]).output();
        let std_lib = sysroot.ok().map(|out| {
            Path::new(String::from_utf8_lossy(&out.stdout).trim())
                .join("lib/rustlib")
                .join(target.triple)
        });
        if !std_lib.is_some_and(|dir| dir.is_dir()) {
            missing.push(format!(
                "the Rust standard library for {} (no rustup)",
                target.triple
            ));
        }
    }
    (!missing.is_empty()).then(|| {
        format!(
            "missing {} (apt packages: {}; scripts/test-all.sh installs them)",
            missing.join(", "),
            target.packages
        )
    })
}

/// `Ok(true)` when the test should run, `Ok(false)` (after saying why) when it is skipped.
fn toolchain_ready(target: &Target) -> Result<bool> {
    let Some(reason) = missing_tools(target) else {
        return Ok(true);
    };
    if std::env::var("CI").is_ok_and(|ci| ci == "true") {
        bail!("{}: {reason}", target.triple);
    }
    // Straight to stderr, past libtest's capture, so the skip shows in the test output.
    let _ = writeln!(
        std::io::stderr().lock(),
        "SKIPPED cross_qemu for {}: {reason}",
        target.triple
    );
    Ok(false)
}

/// Runs `deploy/cross-build.sh --profile cross-test TRIPLE` and returns the `runnel` it built.
fn cross_build(target: &Target) -> Result<PathBuf> {
    let workspace = workspace();
    let target_dir = workspace.join("target").join("cross-test");
    let output = Command::new("bash")
        .arg(workspace.join("deploy/cross-build.sh"))
        .args(["--profile", PROFILE, target.triple])
        .current_dir(&workspace)
        .env("CARGO_TARGET_DIR", &target_dir)
        // The packages are installed by scripts/test-all.sh; a test never runs apt.
        .env("RUNNEL_SKIP_APT", "1")
        .output()
        .context("running deploy/cross-build.sh")?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    ensure!(
        output.status.success(),
        "deploy/cross-build.sh {} failed with {}:\n{}",
        target.triple,
        output.status,
        tail(&text, 80)
    );
    eprintln!("{}", tail(&text, 4));
    let bin = target_dir.join(target.triple).join(PROFILE).join("runnel");
    ensure!(bin.is_file(), "{} was not built", bin.display());
    Ok(bin)
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

fn start_under_qemu(target: &Target, bin: &Path, options: BrokerOptions) -> Result<Broker> {
    Broker::start(
        options
            .binary(bin)
            .launcher(target.qemu, ["-L", target.sysroot])
            .startup_timeout(STARTUP_TIMEOUT),
    )
    .with_context(|| {
        format!(
            "starting the {} broker under {}",
            target.triple, target.qemu
        )
    })
}

/// Bytes that are neither text nor compressible to nothing: every byte value occurs.
fn pseudo_random(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            // xorshift64
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state.to_le_bytes()[0]
        })
        .collect()
}

/// Record `i` of a codec's share: sizes from empty to 60 KiB, a null key and a null value
/// now and then, headers on every third record; half of each value repeats itself so the
/// codecs have something to compress.
fn expected(codec_index: usize, i: usize) -> Record {
    let n = codec_index * RECORDS_PER_CODEC + i;
    let seed = u64::try_from(n).unwrap_or(0);
    let size = [0, 1, 127, 1000, 4096, 16 * 1024, 60 * 1024][n % 7];
    let value = (n % 11 != 5).then(|| {
        let mut value = pseudo_random(seed, size / 2);
        value.extend_from_within(..);
        value.resize(size, 0xA5);
        value
    });
    let key = (n % 13 != 6).then(|| pseudo_random(seed ^ 0xFFFF, 1 + n % 40));
    let headers = if n.is_multiple_of(3) {
        vec![
            (
                "codec".to_owned(),
                Some(CODECS[codec_index].as_bytes().to_vec()),
            ),
            ("bin".to_owned(), Some(pseudo_random(seed ^ 0xABCD, 33))),
            ("null".to_owned(), None),
        ]
    } else {
        Vec::new()
    };
    Record {
        partition: 0,
        offset: i64::try_from(n).unwrap_or(-1),
        key,
        value,
        headers,
        timestamp: rdkafka::Timestamp::CreateTime(base_timestamp() + i64::try_from(n).unwrap_or(0)),
    }
}

/// Create times of the records: recent (older ones would fall to the default 7-day retention),
/// the same for every call in this process.
fn base_timestamp() -> i64 {
    static BASE: OnceLock<i64> = OnceLock::new();
    *BASE.get_or_init(|| {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        i64::try_from(now.as_millis()).unwrap_or(i64::MAX / 2) - 60_000
    })
}

fn all_expected() -> Vec<Record> {
    (0..CODECS.len())
        .flat_map(|c| (0..RECORDS_PER_CODEC).map(move |i| expected(c, i)))
        .collect()
}

/// Produces [`all_expected`] to `topic` (one partition), one producer per codec, in order.
async fn produce(bootstrap: &str, topic: &str) -> Result<()> {
    let records = all_expected();
    for (codec_index, codec) in CODECS.iter().enumerate() {
        let producer = clients::producer(bootstrap, &[("compression.type", codec)])?;
        let share = &records[codec_index * RECORDS_PER_CODEC..][..RECORDS_PER_CODEC];
        let future_records = share.iter().map(|record| {
            let mut headers = OwnedHeaders::new();
            for (key, value) in &record.headers {
                headers = headers.insert(Header {
                    key: key.as_str(),
                    value: value.as_deref(),
                });
            }
            let rdkafka::Timestamp::CreateTime(timestamp) = record.timestamp else {
                unreachable!("expected() sets create times")
            };
            let mut future: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(topic)
                .partition(0)
                .timestamp(timestamp)
                .headers(headers);
            if let Some(key) = &record.key {
                future = future.key(key.as_slice());
            }
            if let Some(value) = &record.value {
                future = future.payload(value.as_slice());
            }
            future
        });
        clients::send_all(&producer, future_records)
            .await
            .with_context(|| format!("producing with compression.type={codec}"))?;
    }
    Ok(())
}

/// Reads `topic` back and compares it with [`all_expected`], record by record.
fn check_round_trip(bootstrap: &str, topic: &str) -> Result<()> {
    let expected = all_expected();
    let got = clients::consume_all(bootstrap, topic, CONSUME_TIMEOUT)?;
    ensure!(
        got.len() == expected.len(),
        "{} records read back, {} produced",
        got.len(),
        expected.len()
    );
    for (got, want) in got.iter().zip(&expected) {
        ensure!(
            got == want,
            "record at offset {} differs: key {:?} vs {:?}, value {:?} vs {:?} bytes, \
             headers {:?} vs {:?}, timestamp {:?} vs {:?}",
            want.offset,
            got.key.as_ref().map(Vec::len),
            want.key.as_ref().map(Vec::len),
            got.value.as_ref().map(Vec::len),
            want.value.as_ref().map(Vec::len),
            got.headers,
            want.headers,
            got.timestamp,
            want.timestamp
        );
    }
    Ok(())
}

/// The `disk_budget_bytes=N` the broker logs when it starts listening.
fn logged_budget(broker: &Broker) -> Result<u64> {
    let log = broker.log();
    let value = log
        .split("disk_budget_bytes=")
        .nth(1)
        .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
        .context("no disk_budget_bytes in the broker log")?;
    value.parse().context("parsing disk_budget_bytes")
}

/// Build, start under qemu, round trip, restart, round trip again. Returns the broker.
async fn round_trip_under_qemu(target: &Target) -> Result<Option<Broker>> {
    if !toolchain_ready(target)? {
        return Ok(None);
    }
    let bin = cross_build(target)?;
    let mut broker = start_under_qemu(target, &bin, BrokerOptions::new())?;
    let topic = "cross-records";
    produce(&broker.bootstrap(), topic).await?;
    check_round_trip(&broker.bootstrap(), topic)?;

    broker
        .restart()
        .context("restarting the broker on its LMDB file")?;
    check_round_trip(&broker.bootstrap(), topic)
        .context("after a SIGTERM and a restart on the same data directory")?;
    Ok(Some(broker))
}

#[tokio::test(flavor = "multi_thread")]
async fn given_an_aarch64_build_when_run_under_qemu_should_round_trip_records_byte_for_byte()
-> Result<()> {
    round_trip_under_qemu(&AARCH64).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn given_an_armv7_build_with_the_default_map_when_run_under_qemu_should_round_trip_and_grow_the_map()
-> Result<()> {
    let Some(broker) = round_trip_under_qemu(&ARMV7).await? else {
        return Ok(());
    };
    let budget = logged_budget(&broker)?;
    ensure!(
        budget <= MAX_MAP_32BIT,
        "a 32-bit broker with the default sizing must cap its map at {MAX_MAP_32BIT} bytes, \
         it logged disk_budget_bytes={budget}"
    );
    grow_the_map_to_its_last_step(&broker).await
}

/// Writes past half the 32-bit budget, so the map doubles from its initial 64 MiB through
/// 128, 256 and 512 MiB to its last step just under [`MAX_MAP_32BIT`], every step inside the
/// 32-bit address space; then reads back the first and the last records.
async fn grow_the_map_to_its_last_step(broker: &Broker) -> Result<()> {
    let topic = "cross-growth";
    let value = pseudo_random(42, usize::try_from(GROWTH_VALUE_BYTES)?);
    let count = usize::try_from((MAX_MAP_32BIT / 2 + 16 * MIB) / GROWTH_VALUE_BYTES).unwrap_or(0);
    let producer = clients::producer(&broker.bootstrap(), &[])?;
    let keys: Vec<String> = (0..count).map(|i| format!("grow-{i}")).collect();
    clients::send_all(
        &producer,
        keys.iter().map(|key| {
            FutureRecord::<str, [u8]>::to(topic)
                .partition(0)
                .key(key.as_str())
                .payload(value.as_slice())
        }),
    )
    .await
    .context("producing past half the 32-bit map budget")?;

    let resizes = logged_resizes(broker);
    ensure!(
        resizes.iter().any(|&to| to > MAX_MAP_32BIT / 2)
            && resizes.iter().all(|&to| to <= MAX_MAP_32BIT),
        "{count} records of {GROWTH_VALUE_BYTES} bytes written; expected the map to grow past \
         {} bytes and never past {MAX_MAP_32BIT}, it was resized to {resizes:?}; log tail:\n{}",
        MAX_MAP_32BIT / 2,
        broker.log_tail(20)
    );

    let consumer = clients::consumer(&broker.bootstrap(), &[])?;
    let (low, high) = clients::watermarks(&consumer, topic, 0)?;
    let count = i64::try_from(count)?;
    ensure!(
        (low, high) == (0, count),
        "watermarks {low}..{high}, {count} records written"
    );
    for start in [0, count - 4] {
        clients::assign(&consumer, topic, &[(0, rdkafka::Offset::Offset(start))])?;
        let records = clients::poll_records(&consumer, 4, CONSUME_TIMEOUT)?;
        for (record, offset) in records.iter().zip(start..) {
            let want_key = &keys[usize::try_from(offset)?];
            ensure!(
                record.offset == offset
                    && record.key.as_deref() == Some(want_key.as_bytes())
                    && record.value.as_deref() == Some(value.as_slice()),
                "record at offset {offset} differs after the map grew (got offset {}, key {:?})",
                record.offset,
                record.key_str()
            );
        }
    }
    Ok(())
}

/// The `to=` sizes of every `resized LMDB map` line in the broker log.
fn logged_resizes(broker: &Broker) -> Vec<u64> {
    broker
        .log()
        .lines()
        .filter(|line| line.contains("resized LMDB map"))
        .filter_map(|line| {
            let rest = line.split(" to=").nth(1)?;
            rest.split(|c: char| !c.is_ascii_digit())
                .next()?
                .parse()
                .ok()
        })
        .collect()
}
