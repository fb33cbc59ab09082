//! Refused input kept whole, for the operator.
//!
//! A dead letter carries a payload's first KiB, enough to say what went
//! wrong but not to recover anything: when a firmware's meta is refused,
//! every chunk of its visits is refused with it, and the ECG is gone once
//! the spool lets it go. So every refused message that a device could have
//! sent (whole, at most [`ecg_ingest::KEPT_PAYLOAD_MAX_BYTES`]) is also
//! written here, one JSON line each, to `YYYY-MM-DD.jsonl` by its
//! reception date, and synced before the ingest spool releases it. The
//! folder is the pipeline's own (in its spool folder, not in the archive:
//! a refused payload may hold anything, such as a pseudonym the archive
//! would have keyed again), and nothing here deletes from it.
//!
//! Bounds, so that a flood cannot fill the disk or crowd out the others:
//! the folder holds at most [`QuarantineConfig::max_bytes`], and one
//! source (device) may add at most
//! [`QuarantineConfig::max_bytes_per_source_day`] a day. What is over
//! either is not kept (its dead letter still goes out) and is counted.
//! After a crash between a line's write and the spool's release, the
//! replayed message is written again: lines are at least once.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use ecg_ingest::Rejection;
use ecg_wire::DeadLetterCode;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use time::{Date, OffsetDateTime};

pub use ecg_ingest::KEPT_PAYLOAD_MAX_BYTES;

/// The quarantine's folder under the pipeline's spool folder.
pub const QUARANTINE_DIR: &str = "quarantine";

/// How much refused input is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuarantineConfig {
    /// All files together.
    pub max_bytes: u64,
    /// What one source may add in one UTC day (by reception time).
    pub max_bytes_per_source_day: u64,
}

impl Default for QuarantineConfig {
    fn default() -> Self {
        QuarantineConfig {
            max_bytes: 1 << 30,
            // About 500 refused 10 s 12-lead visits: far more than a
            // clinic records, far less than the folder.
            max_bytes_per_source_day: 64 << 20,
        }
    }
}

/// Errors of the quarantine's files.
#[derive(Debug, thiserror::Error)]
pub enum QuarantineError {
    #[error("quarantine {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> QuarantineError + '_ {
    move |source| QuarantineError::Io {
        path: path.to_owned(),
        source,
    }
}

/// One line of a quarantine file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuarantinedMessage {
    #[serde(with = "time::serde::rfc3339")]
    pub received_at: OffsetDateTime,
    pub topic: String,
    pub reason_code: DeadLetterCode,
    pub reason: String,
    pub payload_len: u64,
    /// SHA-256 of the payload, lower-case hex.
    pub payload_sha256: String,
    /// Standard base64 (with padding) of the whole payload.
    pub payload_b64: String,
}

impl QuarantinedMessage {
    /// The line for a rejection, when it carries its whole payload.
    pub fn of(r: &Rejection) -> Option<QuarantinedMessage> {
        r.payload_is_whole().then(|| QuarantinedMessage {
            received_at: r.received_at,
            topic: r.topic.clone(),
            reason_code: r.code,
            reason: ecg_wire::DeadLetter::bounded_reason(&r.reason),
            payload_len: r.payload.len() as u64,
            payload_sha256: sha256_hex(&r.payload),
            payload_b64: base64::engine::general_purpose::STANDARD.encode(&r.payload),
        })
    }

    /// The payload, checked against its length and digest.
    pub fn payload(&self) -> Result<Vec<u8>, String> {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(&self.payload_b64)
            .map_err(|e| format!("payload_b64: {e}"))?;
        let digest = sha256_hex(&bytes);
        if bytes.len() as u64 != self.payload_len || digest != self.payload_sha256 {
            return Err(format!(
                "payload of {} bytes, sha256 {digest}, is not the {} bytes of sha256 {}",
                bytes.len(),
                self.payload_len,
                self.payload_sha256
            ));
        }
        Ok(bytes)
    }

    /// The JSON line, newline included.
    pub fn to_line(&self) -> Vec<u8> {
        let mut line = serde_json::to_vec(self).expect("plain fields serialise");
        line.push(b'\n');
        line
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// What became of a line handed to [`Quarantine::keep`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kept {
    Written,
    /// The folder is at [`QuarantineConfig::max_bytes`].
    FolderFull,
    /// The source is at its share for the day.
    SourceOverShare,
}

/// The quarantine folder, appended to by the pipeline's driver.
#[derive(Debug)]
pub struct Quarantine {
    dir: PathBuf,
    cfg: QuarantineConfig,
    used_bytes: u64,
    /// Bytes each source added on `today`.
    today: Option<Date>,
    by_source: HashMap<String, u64>,
    file: Option<(Date, File)>,
    /// Lines written since the last sync.
    unsynced: bool,
    /// A file was created since the last sync (its name needs the folder
    /// synced too).
    new_file: bool,
}

impl Quarantine {
    /// Opens (creating) the folder and counts what it already holds.
    pub fn open(dir: impl Into<PathBuf>, cfg: QuarantineConfig) -> Result<Self, QuarantineError> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        // Refused payloads may hold anything a device sent (a pseudonym,
        // worse): the pipeline's user only, like the generated archive key.
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))
                .map_err(io_err(&dir))?;
        }
        let mut used_bytes = 0;
        for entry in std::fs::read_dir(&dir).map_err(io_err(&dir))? {
            let entry = entry.map_err(io_err(&dir))?;
            used_bytes += entry.metadata().map_err(io_err(&entry.path()))?.len();
        }
        Ok(Quarantine {
            dir,
            cfg,
            used_bytes,
            today: None,
            by_source: HashMap::new(),
            file: None,
            unsynced: false,
            new_file: false,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Bytes in the folder.
    pub fn used_bytes(&self) -> u64 {
        self.used_bytes
    }

    /// Whether every line written is on disk.
    pub fn is_synced(&self) -> bool {
        !self.unsynced && !self.new_file
    }

    /// Appends `line` (one [`QuarantinedMessage::to_line`]) received on
    /// `day` from `source`, within the bounds. Written straight to the
    /// file, so a crash of the process keeps it; [`Quarantine::sync`]
    /// makes it survive the machine's.
    pub fn keep(&mut self, source: &str, day: Date, line: &[u8]) -> Result<Kept, QuarantineError> {
        let len = line.len() as u64;
        if self.used_bytes + len > self.cfg.max_bytes {
            return Ok(Kept::FolderFull);
        }
        if self.today != Some(day) {
            // A new day (or a replayed message of an older one) starts the
            // shares again: they bound a flood, not a ledger.
            self.today = Some(day);
            self.by_source.clear();
        }
        let share = self.by_source.entry(source.to_owned()).or_default();
        if *share + len > self.cfg.max_bytes_per_source_day {
            return Ok(Kept::SourceOverShare);
        }
        let file = match &mut self.file {
            Some((d, f)) if *d == day => f,
            slot => {
                let path = self.dir.join(format!(
                    "{:04}-{:02}-{:02}.jsonl",
                    day.year(),
                    u8::from(day.month()),
                    day.day()
                ));
                let mut opts = OpenOptions::new();
                opts.create(true).append(true);
                #[cfg(unix)]
                std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
                let f = opts.open(&path).map_err(io_err(&path))?;
                self.new_file = true;
                // The old day's file is synced before it is closed.
                if let Some((_, old)) = slot.take() {
                    old.sync_data().map_err(io_err(&self.dir))?;
                }
                &mut slot.insert((day, f)).1
            }
        };
        file.write_all(line).map_err(io_err(&self.dir))?;
        self.unsynced = true;
        *share += len;
        self.used_bytes += len;
        Ok(Kept::Written)
    }

    /// Makes every line written so far durable.
    pub fn sync(&mut self) -> Result<(), QuarantineError> {
        if self.unsynced {
            if let Some((_, f)) = &self.file {
                f.sync_data().map_err(io_err(&self.dir))?;
            }
            self.unsynced = false;
        }
        if self.new_file {
            File::open(&self.dir)
                .and_then(|d| d.sync_all())
                .map_err(io_err(&self.dir))?;
            self.new_file = false;
        }
        Ok(())
    }
}

/// Reads a quarantine file back, naming the line that is not one.
pub fn read_file(path: &Path) -> Result<Vec<QuarantinedMessage>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l).map_err(|e| format!("{} line {}: {e}", path.display(), i + 1))
        })
        .collect()
}

/// Which kept messages an operator asks for (`ecgtriage quarantine`);
/// every set field must match.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selection {
    /// Files of this reception day (UTC) and later.
    pub since: Option<Date>,
    /// Files of this reception day and earlier.
    pub until: Option<Date>,
    pub reason: Option<DeadLetterCode>,
    /// The device named by the message's topic.
    pub device: Option<String>,
}

impl Selection {
    fn takes_day(&self, day: Date) -> bool {
        self.since.is_none_or(|d| day >= d) && self.until.is_none_or(|d| day <= d)
    }

    fn takes(&self, m: &QuarantinedMessage) -> bool {
        self.reason.is_none_or(|r| m.reason_code == r)
            && self
                .device
                .as_deref()
                .is_none_or(|d| device_of(&m.topic) == Some(d))
    }
}

/// The device a topic names (`ecg/v1/dev/{device}/...`), if it names one.
pub fn device_of(topic: &str) -> Option<&str> {
    topic.strip_prefix("ecg/v1/dev/")?.split('/').next()
}

/// One kept message and where it is kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeptEntry {
    pub file: PathBuf,
    /// 1-based.
    pub line: usize,
    pub message: QuarantinedMessage,
}

/// What [`read_folder`] found.
#[derive(Debug, Clone, Default)]
pub struct Found {
    /// The selected messages, in reception order (file by file, line by line).
    pub entries: Vec<KeptEntry>,
    /// Lines and files that could not be read, each named; the rest is
    /// read all the same.
    pub problems: Vec<String>,
}

/// Reads the quarantine folder `dir` (the `YYYY-MM-DD.jsonl` files) and
/// returns the messages `selection` picks. A file's last line without its
/// newline is one the pipeline is writing now, and is left for next time.
pub fn read_folder(dir: &Path, selection: &Selection) -> Result<Found, QuarantineError> {
    let mut days: Vec<(Date, PathBuf)> = Vec::new();
    let mut found = Found::default();
    for entry in std::fs::read_dir(dir).map_err(io_err(dir))? {
        let path = entry.map_err(io_err(dir))?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        match name.strip_suffix(".jsonl").and_then(parse_day) {
            Some(day) => days.push((day, path)),
            None => found.problems.push(format!(
                "{}: not a quarantine file (YYYY-MM-DD.jsonl)",
                path.display()
            )),
        }
    }
    days.sort();
    for (day, path) in days {
        if !selection.takes_day(day) {
            continue;
        }
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) => {
                found.problems.push(format!("{}: {e}", path.display()));
                continue;
            }
        };
        let complete = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        for (i, line) in bytes[..complete].split(|&b| b == b'\n').enumerate() {
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            match serde_json::from_slice::<QuarantinedMessage>(line) {
                Ok(m) if selection.takes(&m) => found.entries.push(KeptEntry {
                    file: path.clone(),
                    line: i + 1,
                    message: m,
                }),
                Ok(_) => {}
                Err(e) => found
                    .problems
                    .push(format!("{} line {}: {e}", path.display(), i + 1)),
            }
        }
    }
    Ok(found)
}

fn parse_day(s: &str) -> Option<Date> {
    let format = time::macros::format_description!("[year]-[month]-[day]");
    Date::parse(s, &format).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn rejection(topic: &str, payload: Vec<u8>, at: OffsetDateTime) -> Rejection {
        Rejection {
            key: None,
            topic: topic.to_owned(),
            payload_len: payload.len(),
            payload,
            code: DeadLetterCode::UnknownVisit,
            reason: "chunk of a visit whose meta never arrived".to_owned(),
            received_at: at,
            spooled: None,
        }
    }

    fn files(dir: &Path) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn refused_messages_are_kept_whole_by_reception_day() {
        let tmp = tempfile::tempdir().unwrap();
        let mut q = Quarantine::open(tmp.path().join("q"), QuarantineConfig::default()).unwrap();
        let day1 = datetime!(2026-12-01 23:59:59 UTC);
        let day2 = datetime!(2026-12-02 00:00:01 UTC);
        let payloads: Vec<Vec<u8>> = vec![
            (0..5000u32).map(|i| (i % 251) as u8).collect(),
            b"{not json".to_vec(),
            vec![0, 1, 2, 255],
        ];
        for (p, at) in payloads.iter().zip([day1, day1, day2]) {
            let line =
                QuarantinedMessage::of(&rejection("ecg/v1/dev/d/visit/v/chunk", p.clone(), at))
                    .unwrap()
                    .to_line();
            assert_eq!(q.keep("d", at.date(), &line).unwrap(), Kept::Written);
            assert!(!q.is_synced());
        }
        q.sync().unwrap();
        assert!(q.is_synced());
        let f = files(q.dir());
        assert_eq!(
            f.iter()
                .map(|p| p.file_name().unwrap().to_str().unwrap())
                .collect::<Vec<_>>(),
            ["2026-12-01.jsonl", "2026-12-02.jsonl"]
        );
        let read: Vec<QuarantinedMessage> = f.iter().flat_map(|p| read_file(p).unwrap()).collect();
        assert_eq!(read.len(), 3);
        for (m, p) in read.iter().zip(&payloads) {
            assert_eq!(&m.payload().unwrap(), p);
            assert_eq!(m.reason_code, DeadLetterCode::UnknownVisit);
        }
        assert_eq!(read[2].received_at, day2);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = |p: &Path| p.metadata().unwrap().permissions().mode() & 0o777;
            assert_eq!(mode(q.dir()), 0o700);
            assert!(f.iter().all(|p| mode(p) == 0o600));
        }
        // Reopened, it counts what it holds.
        let total: u64 = f.iter().map(|p| p.metadata().unwrap().len()).sum();
        let q2 = Quarantine::open(tmp.path().join("q"), QuarantineConfig::default()).unwrap();
        assert_eq!(q2.used_bytes(), total);
    }

    #[test]
    fn the_folder_is_read_in_order_selected_and_a_line_being_written_is_left() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let line = |device: &str, code: DeadLetterCode, at: OffsetDateTime| {
            let mut r = rejection(
                &format!("ecg/v1/dev/{device}/visit/v/chunk"),
                device.as_bytes().to_vec(),
                at,
            );
            r.code = code;
            QuarantinedMessage::of(&r).unwrap().to_line()
        };
        let d1 = datetime!(2026-11-30 10:00 UTC);
        let d2 = datetime!(2026-12-01 10:00 UTC);
        let mut day1 = line("a", DeadLetterCode::UnknownVisit, d1);
        day1.extend(b"{\"not\": \"a line\"}\n");
        day1.extend(line("b", DeadLetterCode::BadChunk, d1));
        let mut day2 = line("a", DeadLetterCode::BadChunk, d2);
        // The pipeline is writing this one now.
        let partial = line("a", DeadLetterCode::BadChunk, d2);
        day2.extend(&partial[..partial.len() / 2]);
        // Written in the other order: files are read by their day.
        std::fs::write(dir.join("2026-12-01.jsonl"), &day2).unwrap();
        std::fs::write(dir.join("2026-11-30.jsonl"), &day1).unwrap();
        std::fs::write(dir.join("notes.txt"), b"x").unwrap();

        let all = read_folder(dir, &Selection::default()).unwrap();
        let who: Vec<_> = all
            .entries
            .iter()
            .map(|e| (device_of(&e.message.topic).unwrap(), e.line))
            .collect();
        assert_eq!(who, [("a", 1), ("b", 3), ("a", 1)]);
        assert_eq!(all.entries[2].message.received_at, d2);
        assert_eq!(all.problems.len(), 2, "{:?}", all.problems);
        assert!(all.problems[0].contains("notes.txt"), "{:?}", all.problems);
        assert!(
            all.problems[1].contains("2026-11-30.jsonl line 2"),
            "{:?}",
            all.problems
        );

        let pick = |s: Selection| -> Vec<(String, usize)> {
            read_folder(dir, &s)
                .unwrap()
                .entries
                .into_iter()
                .map(|e| (e.file.file_name().unwrap().to_string_lossy().into(), e.line))
                .collect()
        };
        let a_bad_chunks = pick(Selection {
            reason: Some(DeadLetterCode::BadChunk),
            device: Some("a".into()),
            ..Default::default()
        });
        assert_eq!(a_bad_chunks, [("2026-12-01.jsonl".to_string(), 1)]);
        let first_day = pick(Selection {
            until: Some(d1.date()),
            ..Default::default()
        });
        assert_eq!(first_day.len(), 2);
        let second_day = pick(Selection {
            since: Some(d2.date()),
            ..Default::default()
        });
        assert_eq!(second_day.len(), 1);
        assert_eq!(device_of("ecg/v2/x"), None);
    }

    fn schema() -> jsonschema::Validator {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../schemas");
        let text = std::fs::read_to_string(dir.join("quarantine-line.schema.json")).unwrap();
        jsonschema::draft202012::options()
            .should_validate_formats(true)
            .build(&serde_json::from_str(&text).unwrap())
            .unwrap()
    }

    /// The schema and the type describe the same lines: the example parses
    /// and checks out, and lines written by the type validate.
    #[test]
    fn lines_follow_the_schema_and_the_example_is_one() {
        let schema = schema();
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../schemas/examples");
        let example = std::fs::read(dir.join("quarantine-line.json")).unwrap();
        let value: serde_json::Value = serde_json::from_slice(&example).unwrap();
        let errors: Vec<String> = schema.iter_errors(&value).map(|e| e.to_string()).collect();
        assert!(errors.is_empty(), "{errors:?}");
        let m: QuarantinedMessage = serde_json::from_slice(&example).unwrap();
        let payload = m.payload().unwrap();
        assert!(payload.starts_with(b"ECGC"), "a chunk");

        let at = datetime!(2026-12-01 10:00 UTC);
        let mut r = rejection("ecg/v1/dev/d/visit/v/chunk", vec![0xff; 70_000], at);
        r.reason = "bad\u{0}reason\n".repeat(100);
        let line = QuarantinedMessage::of(&r).unwrap().to_line();
        let value: serde_json::Value = serde_json::from_slice(&line).unwrap();
        let errors: Vec<String> = schema.iter_errors(&value).map(|e| e.to_string()).collect();
        assert!(errors.is_empty(), "{errors:?}");
        // The schema refuses what the type would not write.
        let mut bad = value.clone();
        bad["payload_sha256"] = "ABC".into();
        assert!(!schema.is_valid(&bad));
    }

    #[test]
    fn a_flooding_source_is_held_to_its_share_and_the_folder_to_its_bound() {
        let tmp = tempfile::tempdir().unwrap();
        let at = datetime!(2026-12-01 10:00 UTC);
        let line = QuarantinedMessage::of(&rejection("t", vec![7; 100], at))
            .unwrap()
            .to_line();
        let len = line.len() as u64;
        let cfg = QuarantineConfig {
            max_bytes: 10 * len,
            max_bytes_per_source_day: 4 * len,
        };
        let mut q = Quarantine::open(tmp.path(), cfg).unwrap();
        let kept = |q: &mut Quarantine, src: &str, day: Date| q.keep(src, day, &line).unwrap();
        for _ in 0..4 {
            assert_eq!(kept(&mut q, "flooder", at.date()), Kept::Written);
        }
        assert_eq!(kept(&mut q, "flooder", at.date()), Kept::SourceOverShare);
        // Another source is not held by the flooder's share.
        assert_eq!(kept(&mut q, "clinic", at.date()), Kept::Written);
        // The next day the flooder has a share again, until the folder is full.
        let next = at.date().next_day().unwrap();
        for _ in 0..4 {
            assert_eq!(kept(&mut q, "flooder", next), Kept::Written);
        }
        assert_eq!(q.used_bytes(), 9 * len);
        assert_eq!(kept(&mut q, "clinic", next), Kept::Written);
        assert_eq!(kept(&mut q, "clinic", next), Kept::FolderFull);
        q.sync().unwrap();
        let on_disk: u64 = files(tmp.path())
            .iter()
            .map(|p| p.metadata().unwrap().len())
            .sum();
        assert_eq!(on_disk, 10 * len);
    }

    #[test]
    fn a_payload_that_was_cut_is_not_quarantined_and_a_bad_line_is_named() {
        let at = datetime!(2026-12-01 10:00 UTC);
        let mut r = rejection("t", vec![1; 1024], at);
        r.payload_len = 1 << 20;
        assert!(QuarantinedMessage::of(&r).is_none());

        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("2026-12-01.jsonl");
        let mut good = QuarantinedMessage::of(&rejection("t", vec![1, 2], at)).unwrap();
        let mut text = good.to_line();
        text.extend_from_slice(b"{\"cut off\n");
        std::fs::write(&path, &text).unwrap();
        let err = read_file(&path).unwrap_err();
        assert!(err.contains("line 2"), "{err}");
        // A line whose payload does not match its digest says so.
        good.payload_b64 = base64::engine::general_purpose::STANDARD.encode([1u8, 3]);
        assert!(good.payload().unwrap_err().contains("sha256"));
    }
}
