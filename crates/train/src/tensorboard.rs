//! TensorBoard event files, written and read back by hand: no protobuf or TensorBoard crate.
//!
//! An event file (`events.out.tfevents.<unix seconds>.<host>.<pid>.senet`) is a sequence of
//! TFRecords. Each record frames one serialized `Event`:
//!
//! ```text
//! u64 length (little endian) | u32 masked CRC-32C of those 8 bytes
//! data (length bytes)        | u32 masked CRC-32C of the data
//! ```
//!
//! CRC-32C is the Castagnoli CRC; "masked" means `((crc >> 15) | (crc << 17)) + 0xa282ead8`
//! (wrapping), so that a CRC of data that itself holds CRCs does not look like one.
//!
//! The data is a protobuf message. Of TensorFlow's `event.proto` / `summary.proto` only three
//! messages matter for scalar curves:
//!
//! ```text
//! message Event   { double wall_time = 1; int64 step = 2;
//!                   oneof what { string file_version = 3; Summary summary = 5;
//!                                SessionLog session_log = 7; } }
//! message Summary { repeated Value value = 1; }
//! message Value   { string tag = 1; float simple_value = 2; }   // Summary.Value
//! message SessionLog { SessionStatus status = 1; }             // START = 1
//! ```
//!
//! A resumed run starts its new file with a `SessionLog` START at the step it resumes from:
//! TensorBoard then drops what earlier files logged from that step on (what the interrupted
//! run logged after its last checkpoint, which the resumed run logs again).
//!
//! A protobuf field is a key `field_number << 3 | wire_type` (a varint) followed by its value:
//! wire type 0 is a varint (7 bits a byte, low first, high bit = "more"), 1 is 8 little-endian
//! bytes (double), 2 is a varint length then that many bytes (string, nested message), 5 is
//! 4 little-endian bytes (float); 3 and 4 open and close a (deprecated) group. The first
//! record of a file is an `Event` whose `file_version` is `"brain.Event:2"`; every scalar
//! after it is an `Event` with one `Summary` holding one `Value`.
//!
//! [`EventWriter`] writes such files; [`read_scalars`] reads them back, checking every CRC and
//! skipping the fields it does not know, for the tests and for CI.
use anyhow::{anyhow, bail, Context, Result};
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, BufWriter, ErrorKind, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// How the name of every event file this module writes starts.
pub const FILE_PREFIX: &str = "events.out.tfevents.";

/// Ends the names of the files [`EventWriter`] makes (before a `.N` that keeps a name unique):
/// what tells them from other programs' event files in the same folder.
const OWN_SUFFIX: &str = ".senet";

/// Whether `name` is an event file [`EventWriter`] made (`--overwrite` removes only those).
pub fn is_own_file(name: &str) -> bool {
    let Some(rest) = name.strip_prefix(FILE_PREFIX) else {
        return false;
    };
    rest.ends_with(OWN_SUFFIX)
        || rest.rsplit_once('.').is_some_and(|(head, n)| {
            head.ends_with(OWN_SUFFIX) && !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())
        })
}

/// The `file_version` of the first event; TensorBoard checks the `brain.Event:` prefix.
const FILE_VERSION: &str = "brain.Event:2";

/// The largest record the reader accepts. A length read from the file is checked against it
/// before it sizes an allocation, so a corrupt length cannot ask for exabytes.
const MAX_RECORD: u64 = 16 << 20;

/// One scalar read back from an event file.
#[derive(Clone, Debug, PartialEq)]
pub struct Scalar {
    /// The series' name, e.g. `epoch/test_top1`.
    pub tag: String,
    /// The x value: the optimizer step it was logged at.
    pub step: u64,
    /// `simple_value` is a protobuf `float`: what [`EventWriter::scalar`] got, rounded to f32.
    pub value: f32,
    /// Seconds since the Unix epoch when the value was written.
    pub wall_time: f64,
}

// ---------------------------------------------------------------------------------------------
// CRC-32C and the TFRecord framing
// ---------------------------------------------------------------------------------------------

/// CRC-32C's polynomial 0x1EDC6F41, bit-reversed because the CRC is computed low bit first.
const CASTAGNOLI_REFLECTED: u32 = 0x82F6_3B78;

/// `CRC_TABLE[b]` is the CRC register after shifting the byte `b` through it, built at compile
/// time, so the CRC takes one lookup per byte instead of eight shifts.
const CRC_TABLE: [u32; 256] = {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut crc = i as u32;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ CASTAGNOLI_REFLECTED
            } else {
                crc >> 1
            };
            bit += 1;
        }
        table[i] = crc;
        i += 1;
    }
    table
};

/// CRC-32C of `data` (initial value and final xor all ones, as in iSCSI and TFRecord).
fn crc32c(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in data {
        crc = CRC_TABLE[((crc ^ u32::from(byte)) & 0xFF) as usize] ^ (crc >> 8);
    }
    !crc
}

/// The CRC as TFRecord stores it: `((crc >> 15) | (crc << 17)) + 0xa282ead8`, wrapping.
fn masked_crc32c(data: &[u8]) -> u32 {
    crc32c(data).rotate_right(15).wrapping_add(0xA282_EAD8)
}

/// One record's bytes: length, its CRC, the data, its CRC.
fn frame(data: &[u8]) -> Vec<u8> {
    let len = (data.len() as u64).to_le_bytes();
    let mut out = Vec::with_capacity(8 + 4 + data.len() + 4);
    out.extend_from_slice(&len);
    out.extend_from_slice(&masked_crc32c(&len).to_le_bytes());
    out.extend_from_slice(data);
    out.extend_from_slice(&masked_crc32c(data).to_le_bytes());
    out
}

/// Reads records one at a time, checking both CRCs.
struct Records<R> {
    input: R,
    /// Where the next record starts, for the error messages.
    offset: u64,
}

impl<R: Read> Records<R> {
    /// The next record's byte offset and data; `None` when the input ends between records.
    fn next(&mut self) -> Result<Option<(u64, Vec<u8>)>> {
        let start = self.offset;
        let mut header = [0u8; 12];
        match fill(&mut self.input, &mut header).with_context(|| at(start))? {
            0 => return Ok(None),
            12 => {}
            n => bail!("{}: truncated, {n} of its 12 header bytes", at(start)),
        }
        let (len_bytes, len_crc) = header.split_at(8);
        check_crc(start, "length", len_bytes, len_crc)?;
        let len = u64::from_le_bytes(array(len_bytes));
        if len > MAX_RECORD {
            bail!(
                "{}: length {len} is over the {MAX_RECORD}-byte limit",
                at(start)
            );
        }
        // The data and its CRC; `len` is at most 16 MiB, so this cannot overflow or explode.
        let mut data = vec![0u8; len as usize + 4];
        let got = fill(&mut self.input, &mut data).with_context(|| at(start))?;
        if got < data.len() {
            bail!(
                "{}: truncated, {got} of the {} bytes after its header",
                at(start),
                data.len()
            );
        }
        let data_crc = data.split_off(len as usize);
        check_crc(start, "data", &data, &data_crc)?;
        self.offset += 12 + len + 4;
        Ok(Some((start, data)))
    }
}

/// How errors name a record.
fn at(offset: u64) -> String {
    format!("record at byte {offset}")
}

fn check_crc(offset: u64, what: &str, bytes: &[u8], stored: &[u8]) -> Result<()> {
    let stored = u32::from_le_bytes(array(stored));
    let computed = masked_crc32c(bytes);
    if stored != computed {
        bail!(
            "{}: {what} CRC mismatch (stored {stored:#010x}, computed {computed:#010x})",
            at(offset)
        );
    }
    Ok(())
}

/// Reads until `buf` is full or the input ends; returns how many bytes it read.
fn fill(input: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match input.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// The first `N` bytes of `bytes` (callers pass exactly `N`) as an array.
fn array<const N: usize>(bytes: &[u8]) -> [u8; N] {
    let mut out = [0u8; N];
    out.copy_from_slice(&bytes[..N]);
    out
}

// ---------------------------------------------------------------------------------------------
// Protobuf encoding
// ---------------------------------------------------------------------------------------------

const VARINT: u8 = 0;
const FIXED64: u8 = 1;
const LEN: u8 = 2;
const START_GROUP: u8 = 3;
const END_GROUP: u8 = 4;
const FIXED32: u8 = 5;

/// Field numbers are 29 bits.
const MAX_FIELD: u64 = (1 << 29) - 1;

fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn put_key(out: &mut Vec<u8>, field: u32, wire: u8) {
    put_varint(out, (u64::from(field) << 3) | u64::from(wire));
}

fn put_bytes(out: &mut Vec<u8>, field: u32, bytes: &[u8]) {
    put_key(out, field, LEN);
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

fn put_fixed64(out: &mut Vec<u8>, field: u32, bits: u64) {
    put_key(out, field, FIXED64);
    out.extend_from_slice(&bits.to_le_bytes());
}

fn put_fixed32(out: &mut Vec<u8>, field: u32, bits: u32) {
    put_key(out, field, FIXED32);
    out.extend_from_slice(&bits.to_le_bytes());
}

/// What an event carries besides its time and step (the `oneof` of `Event`).
enum Body<'a> {
    FileVersion(&'a str),
    Scalar {
        tag: &'a str,
        value: f32,
    },
    /// `SessionLog { status = START }` (`Event` field 7; `SessionLog.status` is field 1, and
    /// START is 1): TensorBoard then drops the events of earlier files at this step and later.
    SessionStart,
}

/// A serialized `Event`. Nested messages are encoded inside out, because a length-delimited
/// field needs its length before its bytes.
fn encode_event(wall_time: f64, step: i64, body: Body<'_>) -> Vec<u8> {
    let mut event = Vec::new();
    put_fixed64(&mut event, 1, wall_time.to_bits());
    put_key(&mut event, 2, VARINT);
    // int64 is a varint of the two's complement, so a negative step would take 10 bytes.
    put_varint(&mut event, step as u64);
    match body {
        Body::FileVersion(version) => put_bytes(&mut event, 3, version.as_bytes()),
        Body::Scalar { tag, value } => {
            let mut summary_value = Vec::new();
            put_bytes(&mut summary_value, 1, tag.as_bytes());
            put_fixed32(&mut summary_value, 2, value.to_bits());
            let mut summary = Vec::new();
            put_bytes(&mut summary, 1, &summary_value);
            put_bytes(&mut event, 5, &summary);
        }
        Body::SessionStart => put_bytes(&mut event, 7, &[1 << 3 | VARINT, 1]),
    }
    event
}

// ---------------------------------------------------------------------------------------------
// Protobuf decoding
// ---------------------------------------------------------------------------------------------

/// One field's value, by wire type. Groups never show up here: [`Fields`] skips them.
enum Field<'a> {
    Varint(u64),
    Fixed64(u64),
    Bytes(&'a [u8]),
    Fixed32(u32),
}

/// The fields of one serialized message, in order. Every length is checked against what is
/// left, so arbitrary bytes give an error, never a panic or a huge allocation.
struct Fields<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Fields<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Fields { buf, pos: 0 }
    }

    /// The next (field number, value), or `None` at the end of the message.
    fn next(&mut self) -> Result<Option<(u32, Field<'a>)>> {
        while self.pos < self.buf.len() {
            let (number, wire) = self.key()?;
            match wire {
                START_GROUP => self.skip_group(number)?,
                END_GROUP => bail!("end of group {number} at byte {} with no start", self.pos),
                _ => return Ok(Some((number, self.value(wire)?))),
            }
        }
        Ok(None)
    }

    fn key(&mut self) -> Result<(u32, u8)> {
        let start = self.pos;
        let key = self.varint()?;
        let number = key >> 3;
        if number == 0 || number > MAX_FIELD {
            bail!("field number {number} at byte {start} is out of range");
        }
        Ok((number as u32, (key & 7) as u8))
    }

    fn value(&mut self, wire: u8) -> Result<Field<'a>> {
        Ok(match wire {
            VARINT => Field::Varint(self.varint()?),
            FIXED64 => Field::Fixed64(u64::from_le_bytes(array(self.take(8)?))),
            LEN => {
                let len = self.varint()?;
                Field::Bytes(self.take(len)?)
            }
            FIXED32 => Field::Fixed32(u32::from_le_bytes(array(self.take(4)?))),
            other => bail!("wire type {other} at byte {} does not exist", self.pos),
        })
    }

    /// Skips a group's fields up to its end-group key. Groups nest; the open ones are kept on
    /// a stack rather than by recursion, so deep nesting in a hostile file cannot overflow the
    /// call stack.
    fn skip_group(&mut self, number: u32) -> Result<()> {
        let mut open = vec![number];
        while let Some(&innermost) = open.last() {
            if self.pos == self.buf.len() {
                bail!("group {innermost} is not closed");
            }
            let (number, wire) = self.key()?;
            match wire {
                START_GROUP => open.push(number),
                END_GROUP if number == innermost => {
                    open.pop();
                }
                END_GROUP => bail!("group {innermost} closed by end of group {number}"),
                _ => {
                    self.value(wire)?;
                }
            }
        }
        Ok(())
    }

    fn varint(&mut self) -> Result<u64> {
        let start = self.pos;
        let mut value = 0u64;
        for i in 0..10 {
            let Some(&byte) = self.buf.get(self.pos) else {
                bail!("varint at byte {start} runs past the end");
            };
            self.pos += 1;
            // The 10th byte holds bit 63 only.
            if i == 9 && byte > 1 {
                break;
            }
            value |= u64::from(byte & 0x7F) << (7 * i);
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        bail!("varint at byte {start} is longer than 64 bits")
    }

    fn take(&mut self, len: u64) -> Result<&'a [u8]> {
        let rest = &self.buf[self.pos..];
        if len > rest.len() as u64 {
            bail!(
                "{len}-byte field at byte {} runs past the end ({} bytes left)",
                self.pos,
                rest.len()
            );
        }
        self.pos += len as usize;
        Ok(&rest[..len as usize])
    }
}

/// What the reader keeps of one `Event`.
#[derive(Debug, Default)]
struct Event {
    wall_time: f64,
    step: u64,
    file_version: Option<String>,
    /// (tag, simple_value) of each `Summary.Value` that has a `simple_value`.
    values: Vec<(String, f32)>,
}

fn decode_event(data: &[u8]) -> Result<Event> {
    let mut event = Event::default();
    let mut fields = Fields::new(data);
    while let Some((number, field)) = fields.next().context("in Event")? {
        match (number, field) {
            (1, Field::Fixed64(bits)) => event.wall_time = f64::from_bits(bits),
            // A negative int64 step (not one this writer makes) reads as a huge u64.
            (2, Field::Varint(step)) => event.step = step,
            (3, Field::Bytes(version)) => {
                event.file_version = Some(utf8(version, "Event.file_version")?);
            }
            (5, Field::Bytes(summary)) => {
                decode_summary(summary, &mut event.values).context("in Event.summary")?;
            }
            // graph_def, log_message, session_log, ... or a field with an unexpected wire
            // type: protobuf parsers treat both as unknown fields and skip them.
            _ => {}
        }
    }
    Ok(event)
}

fn decode_summary(data: &[u8], values: &mut Vec<(String, f32)>) -> Result<()> {
    let mut fields = Fields::new(data);
    while let Some((number, field)) = fields.next()? {
        if let (1, Field::Bytes(value)) = (number, field) {
            values.extend(decode_value(value).context("in Summary.value")?);
        }
    }
    Ok(())
}

/// A `Summary.Value`'s tag and `simple_value`; `None` for other kinds of value (images,
/// histograms, tensors), which carry no `simple_value`.
fn decode_value(data: &[u8]) -> Result<Option<(String, f32)>> {
    let mut tag = String::new();
    let mut simple_value = None;
    let mut fields = Fields::new(data);
    while let Some((number, field)) = fields.next()? {
        match (number, field) {
            (1, Field::Bytes(bytes)) => tag = utf8(bytes, "Summary.Value.tag")?,
            (2, Field::Fixed32(bits)) => simple_value = Some(f32::from_bits(bits)),
            _ => {}
        }
    }
    Ok(simple_value.map(|value| (tag, value)))
}

/// A protobuf `string` must be UTF-8.
fn utf8(bytes: &[u8], what: &str) -> Result<String> {
    String::from_utf8(bytes.to_vec()).map_err(|_| anyhow!("{what} is not UTF-8"))
}

// ---------------------------------------------------------------------------------------------
// Writing
// ---------------------------------------------------------------------------------------------

/// Writes one event file. Records go through a buffer: [`EventWriter::flush`] (and dropping
/// the writer) hands them to the OS, so an interrupted run loses at most the records written
/// since the last flush.
pub struct EventWriter {
    path: PathBuf,
    out: BufWriter<File>,
}

impl EventWriter {
    /// Creates `dir` if needed and a new event file in it, named
    /// `events.out.tfevents.<unix seconds>.<host>.<pid>.senet` (plus `.1`, `.2`, ... if that name
    /// is taken: a resumed run may start within the same second), and writes the
    /// `file_version` event.
    pub fn create(dir: &Path) -> Result<Self> {
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let seconds = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let base = format!(
            "{FILE_PREFIX}{seconds}.{}.{}{OWN_SUFFIX}",
            hostname(),
            std::process::id()
        );
        let (path, file) = create_unique(dir, &base)?;
        let mut writer = EventWriter {
            path,
            out: BufWriter::new(file),
        };
        writer.write_event(&encode_event(
            wall_time(),
            0,
            Body::FileVersion(FILE_VERSION),
        ))?;
        writer.flush()?;
        Ok(writer)
    }

    /// The file this writer writes.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends the scalar `value` (stored as f32, as TensorBoard does) under `tag` at `step`,
    /// stamped with the current time.
    pub fn scalar(&mut self, tag: &str, step: u64, value: f64) -> Result<()> {
        let step = i64::try_from(step).map_err(|_| {
            anyhow!(
                "{}: step {step} does not fit the int64 step of an event",
                self.path.display()
            )
        })?;
        let body = Body::Scalar {
            tag,
            value: value as f32,
        };
        self.write_event(&encode_event(wall_time(), step, body))
    }

    /// Marks a restart at `step` (a resumed run): TensorBoard forgets the steps from `step` on
    /// that the interrupted run had logged, so the curves show each step once.
    pub fn session_start(&mut self, step: u64) -> Result<()> {
        let step = i64::try_from(step)
            .map_err(|_| anyhow!("{}: step {step} does not fit an int64", self.path.display()))?;
        self.write_event(&encode_event(wall_time(), step, Body::SessionStart))
    }

    /// Hands the buffered records to the OS.
    pub fn flush(&mut self) -> Result<()> {
        self.out
            .flush()
            .with_context(|| format!("writing {}", self.path.display()))
    }

    fn write_event(&mut self, event: &[u8]) -> Result<()> {
        if event.len() as u64 > MAX_RECORD {
            bail!(
                "{}: a {}-byte event is over the {MAX_RECORD}-byte record limit",
                self.path.display(),
                event.len()
            );
        }
        self.out
            .write_all(&frame(event))
            .with_context(|| format!("writing {}", self.path.display()))
    }
}

impl Drop for EventWriter {
    fn drop(&mut self) {
        // Errors cannot be returned from drop; call flush() to see them.
        let _ = self.out.flush();
    }
}

/// Seconds since the Unix epoch, with the fraction.
fn wall_time() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// The host name for the file name, from /etc/hostname; characters that do not belong in a
/// file name become `_`.
fn hostname() -> String {
    let name: String = fs::read_to_string("/etc/hostname")
        .unwrap_or_default()
        .trim()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    if name.is_empty() {
        "localhost".to_string()
    } else {
        name
    }
}

/// Creates `dir/base`, or `dir/base.1`, `dir/base.2`, ... if taken. `create_new` makes taking
/// a name atomic, so two writers never share a file.
fn create_unique(dir: &Path, base: &str) -> Result<(PathBuf, File)> {
    for n in 0..1000 {
        let name = if n == 0 {
            base.to_string()
        } else {
            format!("{base}.{n}")
        };
        let path = dir.join(name);
        match OpenOptions::new().write(true).create_new(true).open(&path) {
            Ok(file) => return Ok((path, file)),
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e).with_context(|| format!("creating {}", path.display())),
        }
    }
    bail!("{}: event files {base}.1 to .999 all exist", dir.display())
}

// ---------------------------------------------------------------------------------------------
// Reading
// ---------------------------------------------------------------------------------------------

/// Every scalar of an event file, in file order. Checks both CRCs of every record and that the
/// first event is the `file_version` one; fields other than the scalar ones are skipped. An
/// empty file (or one cut exactly between records) gives the scalars it holds.
pub fn read_scalars(path: &Path) -> Result<Vec<Scalar>> {
    let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    scalars_from(BufReader::new(file)).with_context(|| format!("reading {}", path.display()))
}

fn scalars_from(input: impl Read) -> Result<Vec<Scalar>> {
    let mut records = Records { input, offset: 0 };
    let mut scalars = Vec::new();
    while let Some((offset, data)) = records.next()? {
        let event = decode_event(&data).with_context(|| at(offset))?;
        if offset == 0 && !event.file_version.as_deref().is_some_and(is_version) {
            bail!(
                "{}: the first event has no brain.Event file_version, found {:?}",
                at(offset),
                event.file_version
            );
        }
        scalars.extend(event.values.into_iter().map(|(tag, value)| Scalar {
            tag,
            step: event.step,
            value,
            wall_time: event.wall_time,
        }));
    }
    Ok(scalars)
}

fn is_version(version: &str) -> bool {
    version.starts_with("brain.Event:")
}

/// The event files of `dir` (names containing `tfevents`, as TensorBoard looks for), sorted by
/// name.
pub fn event_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let listing = || format!("listing {}", dir.display());
    let mut files = Vec::new();
    for entry in fs::read_dir(dir).with_context(listing)? {
        let path = entry.with_context(listing)?.path();
        let named = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.contains("tfevents"));
        if named && path.is_file() {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let d =
            std::env::temp_dir().join(format!("senet-tensorboard-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d
    }

    fn scalar_event(wall_time: f64, step: i64, tag: &str, value: f32) -> Vec<u8> {
        encode_event(wall_time, step, Body::Scalar { tag, value })
    }

    /// A small file at fixed times: the version event and two scalars.
    fn sample_file() -> Vec<u8> {
        let mut file = frame(&encode_event(1.0, 0, Body::FileVersion(FILE_VERSION)));
        file.extend(frame(&scalar_event(2.0, 1, "train/loss", 2.5)));
        file.extend(frame(&scalar_event(3.0, 2, "train/loss", 1.25)));
        file
    }

    /// Where each record of a well-formed file starts, then the file's length.
    fn boundaries(file: &[u8]) -> Vec<usize> {
        let mut starts = vec![0];
        let mut pos = 0;
        while pos < file.len() {
            pos += 12 + u64::from_le_bytes(array(&file[pos..])) as usize + 4;
            starts.push(pos);
        }
        starts
    }

    fn error(input: &[u8]) -> String {
        format!("{:#}", scalars_from(input).unwrap_err())
    }

    #[test]
    fn crc32c_matches_the_standard_check_values() {
        assert_eq!(crc32c(b"123456789"), 0xE306_9283);
        assert_eq!(crc32c(b""), 0);
        // RFC 3720 (iSCSI), B.4: 32 bytes of zeros, 32 bytes of ones.
        assert_eq!(crc32c(&[0; 32]), 0x8A91_36AA);
        assert_eq!(crc32c(&[0xFF; 32]), 0x62A8_AB43);
        // Masked CRCs as TensorBoard's Python reader computes them (`masked_crc32c` in
        // tensorboard.compat.tensorflow_stub.pywrap_tensorflow); the second is the length CRC
        // of a 24-byte record, the bytes a3 7f 4b 22 at offset 8 of many event files.
        assert_eq!(masked_crc32c(b"123456789"), 0xC78A_B0E5);
        assert_eq!(masked_crc32c(&24u64.to_le_bytes()), 0x224B_7FA3);
        assert_eq!(masked_crc32c(b"ab"), 0xF4F0_B01C);
    }

    #[test]
    fn a_record_is_length_crc_data_crc() {
        let record = frame(b"ab");
        assert_eq!(record.len(), 8 + 4 + 2 + 4);
        assert_eq!(record[..8], 2u64.to_le_bytes());
        assert_eq!(
            record[8..12],
            masked_crc32c(&2u64.to_le_bytes()).to_le_bytes()
        );
        assert_eq!(&record[12..14], b"ab");
        assert_eq!(record[14..], masked_crc32c(b"ab").to_le_bytes());
    }

    #[test]
    fn own_files_are_told_from_other_programs() {
        assert!(is_own_file("events.out.tfevents.1796216893.vm.24916.senet"));
        assert!(is_own_file(
            "events.out.tfevents.1796216893.vm.24916.senet.3"
        ));
        // PyTorch's SummaryWriter uses the same prefix, without our suffix.
        assert!(!is_own_file("events.out.tfevents.1796216893.vm.24916.0"));
        assert!(!is_own_file(
            "events.out.tfevents.1796216893.vm.24916.senet.x"
        ));
        assert!(!is_own_file("notes.senet"));
        let dir = scratch("own-files");
        let w = EventWriter::create(&dir).unwrap();
        let name = w.path().file_name().unwrap().to_string_lossy().into_owned();
        assert!(is_own_file(&name), "{name}");
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_restart_marker_is_a_session_log_start() {
        let expected = [
            // Event.wall_time 1.5 and Event.step 1 (as in the test below).
            &[0x09, 0, 0, 0, 0, 0, 0, 0xF8, 0x3F][..],
            &[0x10, 1],
            // Event.session_log: key (7 << 3) | 2 = 0x3A, 2 bytes follow (field 6 is the
            // deprecated log_message, which TensorBoard would not read as a restart).
            &[0x3A, 2],
            // SessionLog.status: key (1 << 3) | 0 = 0x08, START = 1.
            &[0x08, 1],
        ]
        .concat();
        assert_eq!(encode_event(1.5, 1, Body::SessionStart), expected);
        // The reader skips it: no scalar comes out of it.
        assert!(decode_event(&expected).is_ok());
    }

    #[test]
    fn an_event_encodes_to_the_bytes_the_protobuf_spec_gives() {
        let expected = [
            // Event.wall_time: key (1 << 3) | 1 (fixed64) = 0x09, then 1.5 as a little-endian
            // double: 1.5 = 0x3FF8_0000_0000_0000.
            &[0x09, 0, 0, 0, 0, 0, 0, 0xF8, 0x3F][..],
            // Event.step: key (2 << 3) | 0 (varint) = 0x10, then 300 = 0b10_0101100: the low
            // seven bits 0101100 = 0x2C with the "more" bit (0xAC), then 0b10 = 0x02.
            &[0x10, 0xAC, 0x02],
            // Event.summary: key (5 << 3) | 2 (length-delimited) = 0x2A, 10 bytes follow.
            &[0x2A, 10],
            // Summary.value: key (1 << 3) | 2 = 0x0A, 8 bytes follow.
            &[0x0A, 8],
            // Value.tag: key (1 << 3) | 2 = 0x0A, 1 byte, "a".
            &[0x0A, 1, b'a'],
            // Value.simple_value: key (2 << 3) | 5 (fixed32) = 0x15, then 0.5f32 =
            // 0x3F00_0000 little endian.
            &[0x15, 0, 0, 0, 0x3F],
        ]
        .concat();
        assert_eq!(scalar_event(1.5, 300, "a", 0.5), expected);

        let expected = [
            // wall_time 1.0 = 0x3FF0_0000_0000_0000; step 0 (written, though proto3 may omit it).
            &[0x09, 0, 0, 0, 0, 0, 0, 0xF0, 0x3F, 0x10, 0x00][..],
            // Event.file_version: key (3 << 3) | 2 = 0x1A, 13 bytes of "brain.Event:2".
            &[0x1A, 13],
            b"brain.Event:2",
        ]
        .concat();
        assert_eq!(
            encode_event(1.0, 0, Body::FileVersion(FILE_VERSION)),
            expected
        );
    }

    #[test]
    fn written_scalars_read_back_exactly() {
        let dir = scratch("roundtrip");
        let before = wall_time();
        let mut writer = EventWriter::create(&dir).unwrap();
        let path = writer.path().to_path_buf();
        let name = path.file_name().unwrap().to_str().unwrap().to_string();
        assert!(name.starts_with(FILE_PREFIX), "{name}");
        assert!(
            name.ends_with(&format!(".{}.senet", std::process::id())),
            "{name}"
        );
        // The version event is flushed at once: a file with no scalars is already valid.
        assert_eq!(read_scalars(&path).unwrap(), []);

        let want = [
            ("train/loss", 1, 2.5),
            ("train/loss", 2, 0.1),
            ("test/top1", 2, 87.25),
            ("lr", 3_000_000_000, -1e-3),
        ];
        for &(tag, step, value) in &want[..2] {
            writer.scalar(tag, step, value).unwrap();
        }
        writer.flush().unwrap();
        assert_eq!(read_scalars(&path).unwrap().len(), 2);
        for &(tag, step, value) in &want[2..] {
            writer.scalar(tag, step, value).unwrap();
        }
        let err = writer.scalar("x", u64::MAX, 0.0).unwrap_err().to_string();
        assert!(err.contains(&name) && err.contains("int64"), "{err}");
        drop(writer); // flushes
        let after = wall_time();

        assert_eq!(event_files(&dir).unwrap(), std::slice::from_ref(&path));
        let got = read_scalars(&path).unwrap();
        assert_eq!(got.len(), want.len());
        for (g, &(tag, step, value)) in got.iter().zip(&want) {
            assert_eq!((g.tag.as_str(), g.step), (tag, step));
            assert_eq!(g.value.to_bits(), (value as f32).to_bits());
            assert!(before <= g.wall_time && g.wall_time <= after, "{g:?}");
        }
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_taken_name_gets_a_suffix_and_files_list_in_name_order() {
        let dir = scratch("names");
        let base = "events.out.tfevents.100.host.7";
        let paths: Vec<PathBuf> = (0..3)
            .map(|_| create_unique(&dir, base).unwrap().0)
            .collect();
        let names: Vec<_> = paths.iter().map(|p| p.file_name().unwrap()).collect();
        assert_eq!(names, [base, &format!("{base}.1"), &format!("{base}.2")]);
        fs::write(dir.join("metrics.csv"), "").unwrap();
        fs::create_dir(dir.join("tfevents.dir")).unwrap();
        assert_eq!(event_files(&dir).unwrap(), paths);

        // Two writers started within the same second get two files.
        let a = EventWriter::create(&dir).unwrap();
        let b = EventWriter::create(&dir).unwrap();
        assert_ne!(a.path(), b.path());
        assert_eq!(event_files(&dir).unwrap().len(), 5);
        let missing = dir.join("missing");
        let err = format!("{:#}", read_scalars(&missing).unwrap_err());
        assert!(err.contains(&missing.display().to_string()), "{err}");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn every_flipped_byte_is_an_error_naming_its_record() {
        let file = sample_file();
        let starts = boundaries(&file);
        for pos in 0..file.len() {
            let record = starts.iter().rev().find(|&&s| s <= pos).unwrap();
            for mask in [0x01, 0x02, 0x04, 0x08, 0x10, 0x20, 0x40, 0x80, 0xFF] {
                let mut bad = file.clone();
                bad[pos] ^= mask;
                let err = error(&bad);
                assert!(
                    err.contains(&format!("record at byte {record}:")) && err.contains("CRC"),
                    "byte {pos} ^ {mask:#x}: {err}"
                );
            }
        }
    }

    #[test]
    fn every_truncation_is_an_error_or_a_shorter_list() {
        let file = sample_file();
        let starts = boundaries(&file);
        assert_eq!(starts.len(), 4);
        for len in 0..=file.len() {
            match starts.iter().position(|&s| s == len) {
                // `records` whole records: the version event, then scalars.
                Some(records) => {
                    let got = scalars_from(&file[..len]).unwrap();
                    assert_eq!(got.len(), records.saturating_sub(1), "cut at {len}");
                }
                None => {
                    let record = starts.iter().rev().find(|&&s| s < len).unwrap();
                    let err = error(&file[..len]);
                    assert!(
                        err.contains(&format!("record at byte {record}: truncated")),
                        "cut at {len}: {err}"
                    );
                }
            }
        }
    }

    #[test]
    fn unknown_fields_of_every_wire_type_are_skipped() {
        // A Value with extra fields of each wire type, one a group holding a nested group.
        let mut value = Vec::new();
        put_key(&mut value, 7, VARINT);
        put_varint(&mut value, u64::MAX); // ten bytes
        put_bytes(&mut value, 1, b"train/loss");
        put_fixed64(&mut value, 12, 42);
        put_key(&mut value, 13, START_GROUP);
        put_fixed32(&mut value, 1, 7);
        put_key(&mut value, 14, START_GROUP);
        put_bytes(&mut value, 2, b"in a nested group");
        put_key(&mut value, 14, END_GROUP);
        put_key(&mut value, 3, VARINT);
        put_varint(&mut value, 1);
        put_key(&mut value, 13, END_GROUP);
        put_fixed32(&mut value, 2, 0.75f32.to_bits());
        put_bytes(&mut value, 9, b"metadata");
        // A Value without simple_value (an image) is not a scalar.
        let mut image = Vec::new();
        put_bytes(&mut image, 1, b"samples");
        put_bytes(&mut image, 4, b"png bytes");
        let mut summary = Vec::new();
        put_bytes(&mut summary, 1, &image);
        put_fixed32(&mut summary, 3, 1);
        put_bytes(&mut summary, 1, &value);
        let mut event = Vec::new();
        put_fixed64(&mut event, 1, 5.0f64.to_bits());
        put_key(&mut event, 2, VARINT);
        put_varint(&mut event, 9);
        put_bytes(&mut event, 6, b"a log message");
        put_key(&mut event, 1000, START_GROUP);
        put_key(&mut event, 1000, END_GROUP);
        // A known field number with the wrong wire type is an unknown field too.
        put_fixed32(&mut event, 2, 123);
        put_bytes(&mut event, 5, &summary);
        put_key(&mut event, 99, VARINT);
        put_varint(&mut event, 300);

        let mut file = frame(&encode_event(1.0, 0, Body::FileVersion(FILE_VERSION)));
        file.extend(frame(&event));
        let want = Scalar {
            tag: "train/loss".into(),
            step: 9,
            value: 0.75,
            wall_time: 5.0,
        };
        assert_eq!(scalars_from(&file[..]).unwrap(), [want]);
    }

    #[test]
    fn malformed_messages_are_errors() {
        let cases: [&[u8]; 12] = [
            &[0x0E],             // field 1, wire type 6
            &[0x0F],             // field 1, wire type 7
            &[0x00, 0x00],       // field 0
            &[0x0C],             // end of group 1 with no start
            &[0x0B, 0x10, 0x01], // group 1 never closed
            &[0x0B, 0x14],       // group 1 closed by end of group 2
            &[0x10],             // step's varint missing
            &[0x10, 0x80],       // step's varint cut short
            // A step varint of 65 bits.
            &[
                0x10, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x02,
            ],
            &[0x09, 0, 0, 0],                            // wall_time cut short
            &[0x2A, 0x05, 0x0A],                         // summary of 5 bytes with 1 left
            &[0x2A, 0x05, 0x0A, 0x03, 0x0A, 0x01, 0xFF], // a tag that is not UTF-8
        ];
        for case in cases {
            assert!(decode_event(case).is_err(), "{case:x?}");
            let mut file = frame(&encode_event(1.0, 0, Body::FileVersion(FILE_VERSION)));
            let second = file.len();
            file.extend(frame(case));
            let err = error(&file);
            assert!(err.contains(&format!("record at byte {second}: ")), "{err}");
        }
    }

    #[test]
    fn an_oversized_length_is_refused_before_allocating() {
        for len in [MAX_RECORD + 1, u64::MAX] {
            let mut file = frame(&encode_event(1.0, 0, Body::FileVersion(FILE_VERSION)));
            let second = file.len();
            file.extend(len.to_le_bytes());
            file.extend(masked_crc32c(&len.to_le_bytes()).to_le_bytes());
            let err = error(&file);
            assert!(
                err.contains(&format!("record at byte {second}: length {len} is over")),
                "{err}"
            );
        }
    }

    #[test]
    fn the_first_event_must_be_the_file_version() {
        let err = error(&frame(&scalar_event(1.0, 1, "loss", 1.0)));
        assert!(err.contains("record at byte 0: the first event"), "{err}");
        let err = error(&frame(&encode_event(1.0, 0, Body::FileVersion("v2"))));
        assert!(err.contains("the first event"), "{err}");
        let err = error(&frame(b""));
        assert!(err.contains("the first event"), "{err}");
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        // A fixed-seed xorshift generator; errors are fine, panics are not.
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let valid = scalar_event(2.0, 7, "train/loss", 1.5);
        let version = frame(&encode_event(1.0, 0, Body::FileVersion(FILE_VERSION)));
        for round in 0..20_000 {
            let payload: Vec<u8> = if round % 2 == 0 {
                // Random bytes, half of them small, so that keys and lengths are often
                // plausible.
                let len = (next() % 48) as usize;
                (0..len)
                    .map(|_| match next() {
                        r if r % 2 == 0 => (r >> 8) as u8 % 32,
                        r => (r >> 8) as u8,
                    })
                    .collect()
            } else {
                // A valid event with a few bytes changed, framed with correct CRCs so that
                // the decoder, not the CRC check, has to cope.
                let mut bytes = valid.clone();
                for _ in 0..1 + next() % 3 {
                    let pos = (next() % bytes.len() as u64) as usize;
                    bytes[pos] = next() as u8;
                }
                bytes
            };
            let _ = decode_event(&payload);
            let mut file = version.clone();
            file.extend(frame(&payload));
            let _ = scalars_from(&file[..]);
            let _ = scalars_from(&payload[..]);
        }
    }
}
