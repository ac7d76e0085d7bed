//! The backup's files: the manifest, the partition container files and their records, and
//! reading, writing and summarizing them.

use super::*;

/// The manifest of a backup.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    pub format: String,
    pub created_at: chrono::DateTime<chrono::Utc>,
    /// The prefix the topics had; `topics[].name` are without it.
    pub topic_prefix: String,
    pub topics: Vec<TopicEntry>,
    /// The value writer schemas, by registry id.
    pub writer_schemas: BTreeMap<u32, serde_json::Value>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TopicEntry {
    pub name: String,
    pub partitions: i32,
    pub files: Vec<FileEntry>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FileEntry {
    pub partition: i32,
    pub path: String,
    pub records: u64,
    pub first_offset: Option<i64>,
    pub last_offset: Option<i64>,
    pub bytes: u64,
    pub sha256: String,
    /// SHA-256 over the records' offsets, timestamps, keys, values and headers.
    pub content_sha256: String,
    /// For `certificate-events`: the SHA-256 of the last record, the head of the hash chain.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chain_head: Option<String>,
}

/// One record as kept.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct LogRecord {
    pub(super) offset: i64,
    pub(super) timestamp: Option<i64>,
    pub(super) key: Option<Vec<u8>>,
    pub(super) value: Option<Vec<u8>>,
    pub(super) headers: Vec<(String, Option<Vec<u8>>)>,
}

pub(super) fn optional_bytes(bytes: Option<&[u8]>) -> Value {
    match bytes {
        Some(b) => Value::Union(1, Box::new(Value::Bytes(b.to_vec()))),
        None => Value::Union(0, Box::new(Value::Null)),
    }
}

pub(super) fn read_optional_bytes(value: &Value) -> anyhow::Result<Option<Vec<u8>>> {
    match value {
        Value::Union(_, inner) => read_optional_bytes(inner),
        Value::Null => Ok(None),
        Value::Bytes(b) => Ok(Some(b.clone())),
        other => bail!("expected bytes or null, found {other:?}"),
    }
}

impl LogRecord {
    pub(super) fn from_message(message: &OwnedMessage) -> Self {
        Self {
            offset: message.offset(),
            timestamp: message.timestamp().to_millis(),
            key: message.key().map(<[u8]>::to_vec),
            value: message.payload().map(<[u8]>::to_vec),
            headers: message
                .headers()
                .map(|h| {
                    h.iter()
                        .map(|header| (header.key.to_owned(), header.value.map(<[u8]>::to_vec)))
                        .collect()
                })
                .unwrap_or_default(),
        }
    }

    pub(super) fn to_value(&self) -> Value {
        Value::Record(vec![
            ("offset".into(), Value::Long(self.offset)),
            (
                "timestamp".into(),
                match self.timestamp {
                    Some(t) => Value::Union(1, Box::new(Value::Long(t))),
                    None => Value::Union(0, Box::new(Value::Null)),
                },
            ),
            ("key".into(), optional_bytes(self.key.as_deref())),
            ("value".into(), optional_bytes(self.value.as_deref())),
            (
                "headers".into(),
                Value::Array(
                    self.headers
                        .iter()
                        .map(|(k, v)| {
                            Value::Record(vec![
                                ("key".into(), Value::String(k.clone())),
                                ("value".into(), optional_bytes(v.as_deref())),
                            ])
                        })
                        .collect(),
                ),
            ),
        ])
    }

    pub(super) fn from_value(value: Value) -> anyhow::Result<Self> {
        let Value::Record(fields) = value else {
            bail!("a record was expected")
        };
        let field = |name: &str| {
            fields
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v)
                .with_context(|| format!("field {name} is missing"))
        };
        let offset = match field("offset")? {
            Value::Long(o) => *o,
            other => bail!("offset: {other:?}"),
        };
        let timestamp = match field("timestamp")? {
            Value::Union(_, inner) => match inner.as_ref() {
                Value::Long(t) => Some(*t),
                _ => None,
            },
            _ => None,
        };
        let Value::Array(items) = field("headers")? else {
            bail!("headers: an array was expected")
        };
        let mut headers = Vec::with_capacity(items.len());
        for item in items {
            let Value::Record(pair) = item else {
                bail!("header: a record was expected")
            };
            let key = match pair.first() {
                Some((_, Value::String(k))) => k.clone(),
                _ => bail!("header key: a string was expected"),
            };
            let value = pair.get(1).map(|(_, v)| read_optional_bytes(v)).transpose()?.flatten();
            headers.push((key, value));
        }
        Ok(Self {
            offset,
            timestamp,
            key: read_optional_bytes(field("key")?)?,
            value: read_optional_bytes(field("value")?)?,
            headers,
        })
    }

    /// Feeds the record's offset and content, unambiguously framed, into a digest.
    pub(super) fn digest(&self, hash: &mut Sha256) {
        hash.update(self.offset.to_be_bytes());
        self.digest_without_offset(hash);
    }

    /// Feeds the record's content (timestamp, key, value, headers) into a digest.
    pub(super) fn digest_without_offset(&self, hash: &mut Sha256) {
        fn framed(hash: &mut Sha256, bytes: Option<&[u8]>) {
            match bytes {
                Some(b) => {
                    hash.update((b.len() as i64).to_be_bytes());
                    hash.update(b);
                }
                None => hash.update((-1_i64).to_be_bytes()),
            }
        }
        hash.update(self.timestamp.unwrap_or(-1).to_be_bytes());
        framed(hash, self.key.as_deref());
        framed(hash, self.value.as_deref());
        hash.update((self.headers.len() as i64).to_be_bytes());
        for (key, value) in &self.headers {
            framed(hash, Some(key.as_bytes()));
            framed(hash, value.as_deref());
        }
    }

    /// Bytes of the key, value and headers.
    pub(super) fn size(&self) -> u64 {
        let headers: usize = self
            .headers
            .iter()
            .map(|(k, v)| k.len() + v.as_ref().map_or(0, Vec::len))
            .sum();
        (self.key.as_ref().map_or(0, Vec::len) + self.value.as_ref().map_or(0, Vec::len) + headers) as u64
    }

    pub(super) fn value_sha256(&self) -> String {
        hex::encode(Sha256::digest(self.value.as_deref().unwrap_or_default()))
    }

    /// The registry id of the value's writer schema (Confluent wire format), if it has one.
    pub(super) fn schema_id(&self) -> Option<u32> {
        match self.value.as_deref() {
            Some([0, a, b, c, d, ..]) => Some(u32::from_be_bytes([*a, *b, *c, *d])),
            _ => None,
        }
    }
}

pub(super) fn record_schema() -> Schema {
    Schema::parse_str(RECORD_SCHEMA).expect("the record schema parses")
}

pub(super) fn file_sha256(path: &Path) -> anyhow::Result<(String, u64)> {
    let mut file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut hash = Sha256::new();
    let mut buffer = vec![0; 1 << 16];
    let mut bytes = 0;
    loop {
        let n = file.read(&mut buffer)?;
        if n == 0 {
            break;
        }
        hash.update(&buffer[..n]);
        bytes += n as u64;
    }
    Ok((hex::encode(hash.finalize()), bytes))
}

/// The records of a backup file, in order.
pub(super) fn read_file(path: &Path) -> anyhow::Result<Vec<LogRecord>> {
    let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let reader = Reader::new(BufReader::new(file)).with_context(|| format!("reading {}", path.display()))?;
    reader
        .map(|value| LogRecord::from_value(value.context("decoding a record")?))
        .collect::<anyhow::Result<Vec<_>>>()
        .with_context(|| format!("reading {}", path.display()))
}

/// What the manifest says of a file's records, kept one record at a time: the backup that writes
/// a file and the check that reads it back keep the same account.
#[derive(Default)]
pub(super) struct Tally {
    pub(super) records: u64,
    pub(super) first_offset: Option<i64>,
    pub(super) last_offset: Option<i64>,
    pub(super) content: Sha256,
    /// SHA-256 of the last record's value.
    pub(super) head: Option<String>,
    /// Bytes of keys, values and headers, as in the log.
    pub(super) log_bytes: u64,
    /// The first place offsets jump, if they do.
    pub(super) gap: Option<(i64, i64)>,
}

impl Tally {
    pub(super) fn add(&mut self, record: &LogRecord) {
        if let Some(previous) = self.last_offset
            && record.offset != previous + 1
            && self.gap.is_none()
        {
            self.gap = Some((previous, record.offset));
        }
        record.digest(&mut self.content);
        self.records += 1;
        self.first_offset.get_or_insert(record.offset);
        self.last_offset = Some(record.offset);
        self.head = Some(record.value_sha256());
        self.log_bytes += record.size();
    }

    pub(super) fn content_sha256(&self) -> String {
        hex::encode(self.content.clone().finalize())
    }

    /// The chain head, for a chained topic (the SHA-256 of nothing for an empty partition).
    pub(super) fn chain_head(&self, chained: bool) -> Option<String> {
        chained.then(|| self.head.clone().unwrap_or_else(|| hex::encode(Sha256::digest(b""))))
    }
}

/// A backup holds every person's data: its directories are created 0700 and its files 0600
/// (whatever the umask), readable by the operator's account alone.
pub(super) fn private_dir(path: &std::path::Path) -> anyhow::Result<()> {
    use std::os::unix::fs::{DirBuilderExt as _, PermissionsExt as _};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
        .with_context(|| format!("creating {}", path.display()))?;
    // An existing (empty) directory keeps its mode unless it is set.
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700))
        .with_context(|| format!("restricting {}", path.display()))
}

/// Creates (or truncates) a file readable and writable by the owner alone.
pub(super) fn private_file(path: &std::path::Path) -> anyhow::Result<File> {
    use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    // A file that existed keeps its mode unless it is set.
    file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    Ok(file)
}

/// Writes a whole file readable by the owner alone.
pub(super) fn write_private(path: &std::path::Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut file = private_file(path)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    Ok(())
}

/// Streams a partition's records into a container file, keeping what the manifest says of them.
pub(super) struct FileWriter<'a> {
    pub(super) writer: Writer<'a, BufWriter<File>>,
    pub(super) path: PathBuf,
    pub(super) partition: i32,
    pub(super) tally: Tally,
}

impl<'a> FileWriter<'a> {
    pub(super) fn create(schema: &'a Schema, path: PathBuf, partition: i32) -> anyhow::Result<Self> {
        let file = private_file(&path)?;
        let writer = Writer::with_codec(schema, BufWriter::new(file), Codec::Deflate(DeflateSettings::default()))?;
        Ok(Self {
            writer,
            path,
            partition,
            tally: Tally::default(),
        })
    }

    pub(super) fn append(&mut self, record: &LogRecord) -> anyhow::Result<()> {
        self.writer.append_value(record.to_value())?;
        self.tally.add(record);
        Ok(())
    }

    pub(super) fn finish(self, dir: &Path, chained: bool) -> anyhow::Result<FileEntry> {
        let mut inner = self.writer.into_inner()?;
        std::io::Write::flush(&mut inner)?;
        inner.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        let (sha256, bytes) = file_sha256(&self.path)?;
        Ok(FileEntry {
            partition: self.partition,
            path: self
                .path
                .strip_prefix(dir)
                .unwrap_or(&self.path)
                .to_string_lossy()
                .into_owned(),
            records: self.tally.records,
            first_offset: self.tally.first_offset,
            last_offset: self.tally.last_offset,
            bytes,
            sha256,
            content_sha256: self.tally.content_sha256(),
            chain_head: self.tally.chain_head(chained),
        })
    }
}

/// A file's records, read in one pass, for checking against the manifest.
pub(super) fn summarize(path: &Path) -> anyhow::Result<Tally> {
    let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let reader = Reader::new(BufReader::new(file)).with_context(|| format!("reading {}", path.display()))?;
    let mut tally = Tally::default();
    for value in reader {
        tally.add(&LogRecord::from_value(value.context("decoding a record")?)?);
    }
    Ok(tally)
}
