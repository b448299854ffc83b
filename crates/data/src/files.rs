//! Reading files from a dataset as an attacker might have made them: only regular files (a FIFO
//! or a device would block or never end), each under a stated size cap checked before anything
//! is allocated, and images decoded under limits on their claimed dimensions.
use crate::error::{io_err, Error, Result};
use std::fs::{self, File};
use std::io::Read;
use std::path::Path;

/// The largest image file (encoded) a dataset may hold: far above any real photograph's.
pub const MAX_IMAGE_FILE_BYTES: u64 = 64 << 20;
/// The largest image side a decoder may allocate for, and its largest allocation.
pub const MAX_DECODED_SIDE: u32 = 16_384;
pub const MAX_DECODE_ALLOC: u64 = 512 << 20;
/// The most bytes of encoded images an archive may hold in memory before they are decoded.
pub const MAX_ARCHIVE_IMAGE_BYTES: u64 = 8 << 30;
/// The most images (or archive entries) a dataset may have.
pub const MAX_ENTRIES: usize = 10_000_000;
/// The most bytes a decoded dataset (both splits) may take in memory.
pub const MAX_DATASET_BYTES: u64 = 16 << 30;
/// The most values (f32) one batch of images may have: 4 GiB.
pub const MAX_BATCH_VALUES: u64 = 1 << 30;

/// An error when `batch` images of `size` x `size` (3 channels) would exceed
/// [`MAX_BATCH_VALUES`]; `flag` names the batch size in the message.
pub fn check_batch(batch: usize, size: usize, flag: &str) -> Result<()> {
    let values = (batch as u64).saturating_mul(3 * (size as u64) * (size as u64));
    if values > MAX_BATCH_VALUES {
        return Err(Error::Options(format!(
            "{flag} {batch} of {size}x{size} images is {values} values, over the cap of \
             {MAX_BATCH_VALUES} (4 GiB): lower {flag}"
        )));
    }
    Ok(())
}

/// The whole of `path`, which must be a regular file (through a symlink is fine: a user's own
/// links stay usable) of at most `cap` bytes; `what` names it in messages.
pub fn read_regular(path: &Path, cap: u64, what: &str) -> Result<Vec<u8>> {
    let meta = fs::metadata(path).map_err(io_err("cannot read", path))?;
    if !meta.is_file() {
        return Err(Error::BadData(format!(
            "{} is not a regular file (a folder, FIFO or device): refusing to read it as {what}",
            path.display()
        )));
    }
    if meta.len() > cap {
        return Err(Error::BadData(format!(
            "{} is {} bytes, over the {cap}-byte cap for {what}",
            path.display(),
            meta.len()
        )));
    }
    let file = File::open(path).map_err(io_err("cannot open", path))?;
    read_capped(file, cap, meta.len(), || path.display().to_string(), what)
}

/// Reads `reader` to its end, refusing more than `cap` bytes (a file that grew, an archive
/// entry whose header understated it, a gzip bomb); `hint` presizes the buffer (capped).
pub(crate) fn read_capped(
    reader: impl Read,
    cap: u64,
    hint: u64,
    shown: impl Fn() -> String,
    what: &str,
) -> Result<Vec<u8>> {
    let mut bytes = Vec::with_capacity(hint.min(cap).min(1 << 20) as usize);
    reader
        .take(cap + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| Error::BadData(format!("cannot read {}: {e}", shown())))?;
    if bytes.len() as u64 > cap {
        return Err(Error::BadData(format!(
            "{} holds more than the {cap}-byte cap for {what}",
            shown()
        )));
    }
    Ok(bytes)
}

/// Decodes a PNG or JPEG, refusing one whose header claims more than [`MAX_DECODED_SIDE`] on a
/// side or whose decoding would allocate more than [`MAX_DECODE_ALLOC`].
pub fn decode_image(bytes: &[u8], shown: &str) -> Result<image::DynamicImage> {
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(MAX_DECODED_SIDE);
    limits.max_image_height = Some(MAX_DECODED_SIDE);
    limits.max_alloc = Some(MAX_DECODE_ALLOC);
    let mut reader = image::ImageReader::new(std::io::Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| Error::BadData(format!("cannot decode image {shown}: {e}")))?;
    reader.limits(limits);
    reader
        .decode()
        .map_err(|e| Error::BadData(format!("cannot decode image {shown}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_regular_files_under_the_cap_are_read() {
        let dir = std::env::temp_dir().join(format!("senet-files-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let f = dir.join("five.bin");
        fs::write(&f, b"12345").unwrap();
        assert_eq!(read_regular(&f, 5, "a test file").unwrap(), b"12345");
        let err = read_regular(&f, 4, "a test file").unwrap_err().to_string();
        assert!(err.contains("over the 4-byte cap"), "{err}");
        let err = read_regular(&dir, 100, "a test file")
            .unwrap_err()
            .to_string();
        assert!(err.contains("not a regular file"), "{err}");
        #[cfg(unix)]
        {
            // A FIFO would block forever if opened and read.
            let fifo = dir.join("fifo");
            let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
            // SAFETY: a valid NUL-terminated path.
            assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
            let err = read_regular(&fifo, 100, "a test file")
                .unwrap_err()
                .to_string();
            assert!(err.contains("not a regular file"), "{err}");
        }
        // A stream longer than its cap stops at the cap.
        let err = read_capped(&[0u8; 100][..], 10, 1 << 40, || "x".into(), "y")
            .unwrap_err()
            .to_string();
        assert!(err.contains("more than the 10-byte cap"), "{err}");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_batch_is_capped() {
        assert!(check_batch(128, 32, "--batch").is_ok());
        let err = check_batch(65536, 4096, "--batch").unwrap_err().to_string();
        assert!(err.contains("--batch 65536 of 4096x4096"), "{err}");
    }

    #[test]
    fn an_image_claiming_huge_dimensions_is_refused_before_decoding() {
        // A PNG header claiming 100000 x 100000 pixels (30 GB decoded), with no data.
        let mut png = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR".to_vec();
        png.extend(100_000u32.to_be_bytes());
        png.extend(100_000u32.to_be_bytes());
        png.extend([8, 2, 0, 0, 0, 0, 0, 0, 0]);
        let err = decode_image(&png, "huge.png").unwrap_err().to_string();
        assert!(err.contains("huge.png"), "{err}");
    }
}
