//! `vaxctl bench signer-state`: the signer's partition state at population scale, through the
//! signer's own fold and state store (`signer_worker::state`), on synthetic outcomes.
//!
//! 1. A child process folds N recipients' issues into a store-backed state (writing it as a
//!    rebuild does, every quarter of the memory bound's worth of lineages), reports its resident memory against the configured
//!    cache bound, folds R more without writing them, and is killed with SIGKILL.
//! 2. Restart with the store: open it, check it, restore the partition and fold the R records
//!    after the stored offset; ready. Then reads of recipients the cache does not hold.
//! 3. In the same run, the baseline: a full rebuild without a store, all N + R records folded
//!    into memory as the signer did before the store; its time and the memory it holds.
//!
//! Neither side reads the broker: a real take-over also reads the records it folds (R with the
//! store, N + R without) at the broker's rate, which `vaxctl bench replay` measures (README,
//! docs/CAPACITY.md).

use std::{
    io::{BufRead as _, Write as _},
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use avro::certificate::{CertificateBody, CertificateEnvelope, Sha256, SourcePosition};
use chrono::Utc;
use clap::Args;
use domain::{
    commands::{ParseContext, RecordVaccination},
    events::{VaccinationEvent, VaccinationPayload},
    ids::EventId,
    lineage::{Lineage, Policy, outcomes},
    vaccine::VaccineCatalog,
    values::{CountryCode, RecipientKey},
};
use serde_json::json;
use sha2::Digest as _;
use signer_worker::{state::PartitionState, store::Store};

/// `vaxctl bench signer-state` arguments.
#[derive(Args, Clone, Debug)]
pub struct SignerStateArgs {
    /// Recipients folded and written to the store before the kill.
    #[arg(long, default_value_t = 1_000_000)]
    pub recipients: u64,
    /// Records folded after the last store write, lost with the process (restored from the log).
    #[arg(long, default_value_t = 20_000)]
    pub recent: u64,
    /// The store's memory bound (lineage cache and redb's page cache together), in bytes.
    #[arg(long, default_value_t = 64 * 1024 * 1024)]
    pub cache_bytes: u64,
    /// Where the store is written (a fresh temporary directory if unset; removed at the end).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Internal: run as the child that fills the store.
    #[arg(long, hide = true)]
    pub child: bool,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
}

const DEPLOYMENT: &str = "bench-certificate-events";
/// The restart and the full rebuild write this often (their memory is not what is measured).
const WRITE_EVERY: u64 = 20_000;

/// Makes the synthetic outcomes: one issue per recipient, chained as the log chains them.
struct Outcomes {
    template: RecordVaccination,
    policy: Policy,
}

impl Outcomes {
    fn new() -> anyhow::Result<Self> {
        let catalog = VaccineCatalog::divoc_default();
        let ctx = ParseContext {
            catalog: &catalog,
            zone: chrono_tz::UTC,
            default_country: CountryCode::parse("c", "IND").map_err(|e| anyhow::anyhow!("{e}"))?,
            today: Utc::now().date_naive(),
        };
        let template = RecordVaccination::parse(&super::body(0), &ctx).map_err(|e| anyhow::anyhow!("{e:?}"))?;
        Ok(Self {
            template,
            policy: Policy::default(),
        })
    }

    fn hash(i: u64) -> Sha256 {
        sha2::Sha256::digest(i.to_le_bytes()).into()
    }

    fn recipient(i: u64) -> RecipientKey {
        RecipientKey::parse("r", &hex::encode(sha2::Sha256::digest(format!("recipient-{i}")))).expect("64 hex")
    }

    /// The i-th output record (offset i) and its hash.
    fn record(&self, i: u64) -> (CertificateEnvelope, Sha256) {
        let event = VaccinationEvent {
            event_id: EventId::derive("bench", &i.to_string()),
            recipient_key: Self::recipient(i),
            payload: VaccinationPayload::VaccinationRecorded(self.template.clone()),
        };
        let status = allocator().slot(0, i).expect("partition 0 has room");
        let outcome = outcomes(&Lineage::default(), &event, &self.policy, status)
            .into_iter()
            .next()
            .expect("a first dose is issued");
        let now = Utc::now();
        let envelope = CertificateEnvelope {
            occurred_at: now,
            recorded_at: now,
            source: SourcePosition {
                partition: 0,
                offset: i as i64,
            },
            previous_sha256: i.checked_sub(1).map(Self::hash),
            body: CertificateBody::Outcome {
                recipient_key: event.recipient_key,
                source_sha256: [0; 32],
                event: outcome,
                credential: None,
            },
        };
        (envelope, Self::hash(i))
    }

    /// Folds records `range` into `state` as a rebuild does, writing the store every
    /// `write_every` records (never, if `None`).
    fn fold(
        &self,
        state: &mut PartitionState,
        range: std::ops::Range<u64>,
        write_every: Option<u64>,
        bar: &indicatif::ProgressBar,
    ) -> anyhow::Result<()> {
        for i in range {
            let (envelope, hash) = self.record(i);
            state.last_delivered = Some((i as i64, hash));
            state.fold(&envelope, hash)?;
            if write_every.is_some_and(|every| (i + 1) % every == 0) {
                state.persist(|| ())?;
            }
            bar.inc(1);
        }
        Ok(())
    }
}

/// Resident memory of this process, in bytes.
fn resident() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(0, |kib| kib * 1024)
}

/// The child: fills the store, reports, folds the recent records without writing, waits to die.
fn child(args: &SignerStateArgs, dir: &Path) -> anyhow::Result<()> {
    let outcomes = Outcomes::new()?;
    // The process before any state: the binary, its libraries and runtime.
    let baseline = resident();
    let store = Store::open(dir, DEPLOYMENT, args.cache_bytes)?;
    let every = store.write_every() as u64;
    let mut state = PartitionState::new(0, 0, Some(store), allocator());
    let started = Instant::now();
    let bar = indicatif::ProgressBar::hidden();
    let mut peak = 0;
    let step = (args.recipients / 20).max(every);
    let mut at = 0;
    while at < args.recipients {
        let end = (at + step).min(args.recipients);
        outcomes.fold(&mut state, at..end, Some(every), &bar)?;
        at = end;
        peak = peak.max(resident());
        eprintln!(
            "  child: {at} recipients folded and written, resident {} MiB",
            resident() >> 20
        );
    }
    state.persist(|| ())?;
    let fill_seconds = started.elapsed().as_secs_f64();
    outcomes.fold(&mut state, args.recipients..args.recipients + args.recent, None, &bar)?;
    let after_recent = resident();
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "{}",
        json!({
            "fill_seconds": fill_seconds,
            "resident_peak_bytes": peak,
            "resident_baseline_bytes": baseline,
            "resident_with_recent_unwritten_bytes": after_recent,
        })
    )?;
    out.flush()?;
    // Waits for the SIGKILL.
    std::thread::sleep(Duration::from_secs(3600));
    Ok(())
}

fn directory_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

/// Runs the benchmark (or, with `--child`, the child).
pub fn run(args: &SignerStateArgs) -> anyhow::Result<()> {
    let dir = args
        .dir
        .clone()
        .unwrap_or_else(|| std::env::temp_dir().join(format!("vaxtrail-bench-signer-state-{}", std::process::id())));
    if args.child {
        return child(args, &dir);
    }
    anyhow::ensure!(
        !dir.exists(),
        "{} exists: the bench writes a store of its own",
        dir.display()
    );
    let total = args.recipients + args.recent;

    // 1. The child fills the store and is killed.
    if !args.json {
        println!(
            "filling a store with {} recipients in a child process ...",
            args.recipients
        );
    }
    let mut child = std::process::Command::new(std::env::current_exe()?)
        .args(["bench", "signer-state", "--child"])
        .args(["--recipients", &args.recipients.to_string()])
        .args(["--recent", &args.recent.to_string()])
        .args(["--cache-bytes", &args.cache_bytes.to_string()])
        .arg("--dir")
        .arg(&dir)
        .stdout(std::process::Stdio::piped())
        .spawn()?;
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().expect("piped")).read_line(&mut line)?;
    let filled: serde_json::Value =
        serde_json::from_str(&line).map_err(|e| anyhow::anyhow!("the child did not report ({e}): {line:?}"))?;
    child.kill()?;
    child.wait()?;
    let store_bytes = directory_bytes(&dir);

    // 2. Restart with the store: restored, then the recent records folded.
    let started = Instant::now();
    let store = Store::open(&dir, DEPLOYMENT, args.cache_bytes)?;
    let opened = started.elapsed();
    let (meta, bits) = store
        .load(0)?
        .ok_or_else(|| anyhow::anyhow!("the store holds partition 0"))?;
    anyhow::ensure!(
        meta.output_offset == args.recipients as i64,
        "the store reflects offset {}, not {}",
        meta.output_offset,
        args.recipients
    );
    let outcomes = Outcomes::new()?;
    let mut state = PartitionState::restored(0, store.clone(), meta, bits, allocator());
    let from = state.output_end as u64;
    let bar = vaxctl::progress(args.recent as usize, "restore", args.json);
    outcomes.fold(&mut state, from..total, Some(WRITE_EVERY), &bar)?;
    state.persist(|| ())?;
    bar.finish_and_clear();
    let restore = started.elapsed();
    anyhow::ensure!(
        state.recipients() == total,
        "{} recipients after the restore",
        state.recipients()
    );
    // Reads the cache does not hold: recipients written long before the kill.
    let reads = 10_000.min(args.recipients);
    let started = Instant::now();
    for k in 0..reads {
        let i = (k * 7_919) % args.recipients;
        let lineage = state.lineage(&Outcomes::recipient(i))?;
        anyhow::ensure!(lineage.doses().count() == 1, "recipient {i} has its dose");
    }
    let read_us = started.elapsed().as_secs_f64() * 1e6 / reads as f64;
    let encoded = signer_worker::store::encode(&state.lineage(&Outcomes::recipient(0))?)?.len();
    drop(state);
    drop(store);

    // 3. The baseline: a full rebuild without a store, everything in memory.
    let before = resident();
    let started = Instant::now();
    let mut memory = PartitionState::new(0, 0, None, allocator());
    let bar = vaxctl::progress(total as usize, "full", args.json);
    outcomes.fold(&mut memory, 0..total, None, &bar)?;
    bar.finish_and_clear();
    let full = started.elapsed();
    let held = resident().saturating_sub(before);
    anyhow::ensure!(
        memory.recipients() == total,
        "{} recipients in memory",
        memory.recipients()
    );
    drop(memory);
    if args.dir.is_none() {
        let _ = std::fs::remove_dir_all(&dir);
    }

    let report = json!({
        "recipients": args.recipients,
        "recent": args.recent,
        "cache_bytes": args.cache_bytes,
        "child": filled,
        "store_bytes": store_bytes,
        "restore_seconds": restore.as_secs_f64(),
        "store_open_seconds": opened.as_secs_f64(),
        "full_rebuild_seconds": full.as_secs_f64(),
        "restore_over_full": restore.as_secs_f64() / full.as_secs_f64(),
        "cold_read_us": read_us,
        "lineage_encoded_bytes": encoded,
        "in_memory_state_bytes": held,
    });
    if args.json {
        println!("{report}");
        return Ok(());
    }
    let mib = |b: u64| b as f64 / 1_048_576.0;
    let peak = filled["resident_peak_bytes"].as_u64().unwrap_or(0);
    let baseline = filled["resident_baseline_bytes"].as_u64().unwrap_or(0);
    println!(
        "recipients {} (+{} after the last store write), cache bound {:.0} MiB",
        args.recipients,
        args.recent,
        mib(args.cache_bytes)
    );
    let with_recent = filled["resident_with_recent_unwritten_bytes"].as_u64().unwrap_or(0);
    println!(
        "  child with the store: resident peak while filling {:.0} MiB, {:.0} MiB above its {:.0} MiB baseline ({:.2}x the bound); {:.0} MiB with the {} recent lineages unwritten; store on disk {:.0} MiB ({:.0} bytes per recipient)",
        mib(peak),
        mib(peak - baseline),
        mib(baseline),
        (peak - baseline) as f64 / args.cache_bytes as f64,
        mib(with_recent),
        args.recent,
        mib(store_bytes),
        store_bytes as f64 / args.recipients as f64
    );
    println!(
        "  filling the store: {:.1} s ({:.0} recipients/s)",
        filled["fill_seconds"].as_f64().unwrap_or(0.0),
        args.recipients as f64 / filled["fill_seconds"].as_f64().unwrap_or(1.0)
    );
    println!(
        "  restart after SIGKILL, with the store: ready in {:.2} s (store opened and recovered in {:.2} s, {} records folded)",
        restore.as_secs_f64(),
        opened.as_secs_f64(),
        args.recent
    );
    println!(
        "  full rebuild without it:             ready in {:.2} s ({} records folded), {:.0} MiB held in memory",
        full.as_secs_f64(),
        total,
        mib(held)
    );
    println!(
        "  restore / full rebuild: {:.4}; a read the cache does not hold: {:.1} µs",
        restore.as_secs_f64() / full.as_secs_f64(),
        read_us
    );
    println!(
        "  a one-dose lineage: {encoded} bytes stored (CBOR), {:.0} bytes in memory",
        held as f64 / total as f64
    );
    Ok(())
}

/// The development deployment's status allocator (one for the whole bench).
fn allocator() -> std::sync::Arc<domain::status::StatusAllocator> {
    static ALLOCATOR: std::sync::LazyLock<std::sync::Arc<domain::status::StatusAllocator>> =
        std::sync::LazyLock::new(|| {
            std::sync::Arc::new(domain::status::StatusAllocator::new(&domain::ids::IdKey::development()))
        });
    ALLOCATOR.clone()
}
