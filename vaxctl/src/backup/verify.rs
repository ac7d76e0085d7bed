//! Checking a backup offline: every file's SHA-256, records, offsets and chain heads against
//! the manifest.

use super::*;

/// What is wrong with a backup, if anything, and its counts.
pub(super) fn check(dir: &Path) -> anyhow::Result<(Manifest, Vec<String>)> {
    let manifest: Manifest = serde_json::from_slice(
        &std::fs::read(dir.join("manifest.json"))
            .with_context(|| format!("reading {}/manifest.json", dir.display()))?,
    )
    .context("manifest.json is not a vaxtrail backup manifest")?;
    ensure!(manifest.format == FORMAT, "unknown backup format {:?}", manifest.format);
    let mut problems = Vec::new();
    for topic in &manifest.topics {
        for file in &topic.files {
            let path = dir.join(&file.path);
            let where_ = format!("{} partition {}", topic.name, file.partition);
            let (sha256, _) = match file_sha256(&path) {
                Ok(found) => found,
                Err(error) => {
                    problems.push(format!("{where_}: {error:#}"));
                    continue;
                }
            };
            if sha256 != file.sha256 {
                problems.push(format!(
                    "{where_}: {} has SHA-256 {sha256}, the manifest says {}",
                    file.path, file.sha256
                ));
                continue;
            }
            let found = match summarize(&path) {
                Ok(found) => found,
                Err(error) => {
                    problems.push(format!("{where_}: {error:#}"));
                    continue;
                }
            };
            if found.records != file.records
                || found.first_offset != file.first_offset
                || found.last_offset != file.last_offset
            {
                problems.push(format!(
                    "{where_}: holds {} records ({:?}..{:?}), the manifest says {} ({:?}..{:?})",
                    found.records,
                    found.first_offset,
                    found.last_offset,
                    file.records,
                    file.first_offset,
                    file.last_offset
                ));
            }
            if found.content_sha256() != file.content_sha256 {
                problems.push(format!(
                    "{where_}: the records' content SHA-256 differs from the manifest's"
                ));
            }
            if found.chain_head(file.chain_head.is_some()) != file.chain_head {
                problems.push(format!("{where_}: the chain head differs from the manifest's"));
            }
            // The registry's topic is compacted: its offsets may jump.
            if let Some((from, to)) = found.gap
                && topic.name != SCHEMAS_TOPIC
            {
                problems.push(format!("{where_}: offsets jump from {from} to {to}"));
            }
        }
    }
    Ok((manifest, problems))
}

pub(super) fn verify(dir: &Path, json: bool) -> anyhow::Result<()> {
    let (manifest, problems) = check(dir)?;
    let records: u64 = manifest.topics.iter().flat_map(|t| &t.files).map(|f| f.records).sum();
    let files: usize = manifest.topics.iter().map(|t| t.files.len()).sum();
    if json {
        println!(
            "{}",
            json!({ "ok": problems.is_empty(), "records": records, "files": files, "problems": problems })
        );
    } else if problems.is_empty() {
        println!(
            "ok: {files} files, {records} records, every SHA-256, count, offset and chain head as the manifest says"
        );
    } else {
        for problem in &problems {
            println!("BROKEN: {problem}");
        }
    }
    if !problems.is_empty() {
        std::process::exit(1);
    }
    Ok(())
}
