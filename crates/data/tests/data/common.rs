//! Builders of test data: CIFAR binary records, images, tar.gz archives, a one-shot HTTP server.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use md5::{Digest, Md5};

pub const CIFAR10_NAMES: [&str; 10] = [
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
];

/// Deterministic pixels of image number `g`.
pub fn pixels(g: usize) -> Vec<u8> {
    (0..3072).map(|j| ((g * 131 + j * 7) % 256) as u8).collect()
}

/// Label of CIFAR-10 image number `g`.
pub fn label10(g: usize) -> u8 {
    ((g * 3 + 1) % 10) as u8
}

/// Writes CIFAR-10 binary files into `dir/cifar-10-batches-bin`: `per_batch` records in each
/// train file and `test` in the test file; image g (counting train files in order, then test)
/// has `pixels(g)` and `label10(g)`.
pub fn write_cifar10(dir: &Path, per_batch: usize, test: usize) {
    let folder = dir.join("cifar-10-batches-bin");
    std::fs::create_dir_all(&folder).unwrap();
    let mut g = 0;
    let mut file = |name: &str, n: usize| {
        let mut bytes = Vec::new();
        for _ in 0..n {
            bytes.push(label10(g));
            bytes.extend(pixels(g));
            g += 1;
        }
        std::fs::write(folder.join(name), bytes).unwrap();
    };
    for b in 1..=5 {
        file(&format!("data_batch_{b}.bin"), per_batch);
    }
    file("test_batch.bin", test);
    let mut meta = CIFAR10_NAMES.join("\n");
    meta.push_str("\n\n"); // the official file ends with blank lines
    std::fs::write(folder.join("batches.meta.txt"), meta).unwrap();
}

/// Coarse and fine labels of CIFAR-100 image number `g`.
pub fn labels100(g: usize) -> (u8, u8) {
    (((g * 7) % 20) as u8, ((g * 37 + 5) % 100) as u8)
}

/// Writes CIFAR-100 binary files into `dir/cifar-100-binary`.
pub fn write_cifar100(dir: &Path, train: usize, test: usize) {
    let folder = dir.join("cifar-100-binary");
    std::fs::create_dir_all(&folder).unwrap();
    let mut g = 0;
    let mut file = |name: &str, n: usize| {
        let mut bytes = Vec::new();
        for _ in 0..n {
            let (c, f) = labels100(g);
            bytes.push(c);
            bytes.push(f);
            bytes.extend(pixels(g));
            g += 1;
        }
        std::fs::write(folder.join(name), bytes).unwrap();
    };
    file("train.bin", train);
    file("test.bin", test);
    let fine: Vec<String> = (0..100).map(|i| format!("fine{i:02}")).collect();
    let coarse: Vec<String> = (0..20).map(|i| format!("coarse{i:02}")).collect();
    std::fs::write(folder.join("fine_label_names.txt"), fine.join("\n")).unwrap();
    std::fs::write(folder.join("coarse_label_names.txt"), coarse.join("\n")).unwrap();
}

/// A tar.gz of every file under `root`, with paths relative to `root` (folders included).
pub fn targz_of(root: &Path) -> Vec<u8> {
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut tar = tar::Builder::new(gz);
    tar.append_dir_all(".", root).unwrap();
    tar.into_inner().unwrap().finish().unwrap()
}

/// A tar.gz holding the given (path, bytes) files, with no folder entries.
pub fn targz(files: &[(&str, &[u8])]) -> Vec<u8> {
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut tar = tar::Builder::new(gz);
    for (path, data) in files {
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        tar.append_data(&mut header, path, *data).unwrap();
    }
    tar.into_inner().unwrap().finish().unwrap()
}

pub fn md5_hex(bytes: &[u8]) -> String {
    Md5::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Names of the entries of a folder, sorted.
pub fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// A local HTTP server on 127.0.0.1 that answers at most `max_requests` requests with `status`
/// and `body`, then stops; it also stops by itself after 30 s.
pub struct Server {
    pub url: String,
    handle: JoinHandle<usize>,
}

impl Server {
    pub fn start(status: &'static str, body: Vec<u8>, max_requests: usize) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!(
            "http://{}/cifar-binary.tar.gz",
            listener.local_addr().unwrap()
        );
        listener.set_nonblocking(true).unwrap();
        let handle = std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(30);
            let mut served = 0;
            while served < max_requests && Instant::now() < deadline {
                let mut stream = match listener.accept() {
                    Ok((s, _)) => s,
                    Err(_) => {
                        std::thread::sleep(Duration::from_millis(5));
                        continue;
                    }
                };
                stream.set_nonblocking(false).unwrap();
                stream
                    .set_read_timeout(Some(Duration::from_secs(5)))
                    .unwrap();
                // Read the request head before answering, so the client sees no reset.
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let reply = format!(
                    "HTTP/1.1 {status}\r\nContent-Length: {}\r\nContent-Type: \
                     application/octet-stream\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = stream.write_all(reply.as_bytes());
                let _ = stream.write_all(&body);
                served += 1;
            }
            served
        });
        Self { url, handle }
    }

    /// Waits for the server thread; returns the number of requests it answered.
    pub fn finish(self) -> usize {
        self.handle.join().unwrap()
    }
}

/// A server on 127.0.0.1 that announces `announced` bytes and then sends one byte every
/// `every`, for at most 20 s: a stalled or trickling transfer.
pub fn trickle_server(announced: u64, every: Duration) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!(
        "http://{}/cifar-binary.tar.gz",
        listener.local_addr().unwrap()
    );
    std::thread::spawn(move || {
        let Ok((mut stream, _)) = listener.accept() else {
            return;
        };
        let mut buf = [0u8; 1024];
        let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
        let _ = stream.read(&mut buf);
        let head =
            format!("HTTP/1.1 200 OK\r\nContent-Length: {announced}\r\nConnection: close\r\n\r\n");
        let _ = stream.write_all(head.as_bytes());
        let end = Instant::now() + Duration::from_secs(20);
        while Instant::now() < end && stream.write_all(b"x").is_ok() {
            std::thread::sleep(every);
        }
    });
    url
}

/// A URL on 127.0.0.1 where nothing listens (connection refused).
pub fn dead_url() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    format!("http://{addr}/cifar-10-binary.tar.gz")
}
