//! The relay against real sockets: a body moved with `splice` arrives byte for byte, the
//! relay stops exactly at the message's end (the next message's bytes stay unread), and an
//! early close is reported on the side that closed.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream as StdStream};
use std::rc::Rc;
use std::time::Duration;

use weir_io::conn::Conn;
use weir_io::pipe::PipePool;
use weir_io::relay::{BodyMode, End, Moved, Mover, RateFloor};
use weir_io::runtime::{block_on, Driver};
use weir_io::{Kind, Side};

/// A deterministic body: cheap to generate and to check.
fn pattern(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u64).wrapping_mul(2654435761).to_le_bytes()[1])
        .collect()
}

/// A connected pair: the std end for a helper thread, the monoio end (as `Conn`) for the relay.
fn pair(listener: &TcpListener) -> (StdStream, std::net::TcpStream) {
    let a = StdStream::connect(listener.local_addr().unwrap()).unwrap();
    let (b, _) = listener.accept().unwrap();
    (a, b)
}

fn run_relay(
    mode: BodyMode,
    body_len: usize,
    send_len: usize,
    trailer: &'static [u8],
) -> (
    Result<(), weir_io::Error>,
    weir_io::relay::MovedCounts,
    Vec<u8>,
    Vec<u8>,
) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let (mut src_peer, src_local) = pair(&listener);
    let (dst_local, mut dst_peer) = pair(&listener);
    let body = pattern(send_len);
    let writer = std::thread::spawn(move || {
        let _ = src_peer.write_all(&body);
        let _ = src_peer.write_all(trailer);
        // Keep the socket open until the relay is done reading, unless the body is short.
        if send_len >= body_len {
            std::thread::sleep(Duration::from_millis(300));
        }
    });
    let reader = std::thread::spawn(move || {
        let mut got = Vec::new();
        let _ = dst_peer.read_to_end(&mut got);
        got
    });
    let (result, moved, leftover) = block_on(Driver::detect(), 256, || async move {
        let mut src =
            Conn::new(monoio::net::TcpStream::from_std(src_local).unwrap(), 4096).unwrap();
        let mut dst =
            Conn::new(monoio::net::TcpStream::from_std(dst_local).unwrap(), 4096).unwrap();
        let pipes = Rc::new(PipePool::new(1 << 20, 4));
        let mut mover = Mover::new(mode, pipes, Duration::from_secs(5), 16 * 1024);
        let moved = Moved::default();
        let result = mover
            .exact(
                End {
                    conn: &mut src,
                    side: Side::Upstream,
                },
                End {
                    conn: &mut dst,
                    side: Side::Client,
                },
                body_len as u64,
                &moved,
            )
            .await;
        // What follows the message must still be in the source socket.
        let mut leftover = Vec::new();
        if result.is_ok() && !trailer.is_empty() {
            while leftover.len() < trailer.len() {
                match monoio::time::timeout(Duration::from_secs(2), src.read_more()).await {
                    Ok(Ok(n)) if n > 0 => {
                        leftover = src.buffered().to_vec();
                    }
                    _ => break,
                }
            }
        }
        drop(dst);
        (result, moved.counts(), leftover)
    })
    .unwrap();
    writer.join().unwrap();
    let got = reader.join().unwrap();
    (result, moved, got, leftover)
}

#[test]
fn splice_moves_exact_body_and_leaves_next_message_unread() {
    let len = 48 * 1024 * 1024 + 17;
    let (result, moved, got, leftover) = run_relay(BodyMode::Splice, len, len, b"NEXT");
    result.expect("relay");
    assert_eq!(got.len(), len);
    assert!(got == pattern(len), "body bytes differ");
    assert_eq!(moved.total(), len as u64);
    assert_eq!(
        moved.copied, 0,
        "no body byte should pass through user space"
    );
    assert_eq!(leftover, b"NEXT");
}

#[test]
fn copy_mode_moves_the_same_bytes_through_user_space() {
    let len = 8 * 1024 * 1024 + 3;
    let (result, moved, got, leftover) = run_relay(BodyMode::Copy, len, len, b"NEXT");
    result.expect("relay");
    assert!(got == pattern(len));
    assert_eq!(moved.spliced, 0);
    assert_eq!(moved.copied, len as u64);
    assert_eq!(leftover, b"NEXT");
}

#[test]
fn early_close_is_the_source_side_and_counts_what_arrived() {
    let len = 4 * 1024 * 1024;
    let sent = 1024 * 1024 + 5;
    let (result, moved, got, _) = run_relay(BodyMode::Splice, len, sent, b"");
    let err = result.expect_err("short body must fail");
    assert_eq!(err.side, Side::Upstream);
    assert_eq!(err.kind, Kind::Closed);
    assert_eq!(moved.total(), sent as u64);
    assert_eq!(got.len(), sent);
}

/// Relays a `len`-byte body whose source sends `step` bytes every `every`, with the given
/// rate floor (and a 5 s idle timeout, which a steady trickle never reaches). Returns the
/// relay's result and how long it took.
fn trickle(
    mode: BodyMode,
    len: usize,
    step: usize,
    every: Duration,
    floor: Option<RateFloor>,
) -> (Result<(), weir_io::Error>, Duration) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let (mut src_peer, src_local) = pair(&listener);
    let (dst_local, mut dst_peer) = pair(&listener);
    let writer = std::thread::spawn(move || {
        let body = pattern(len);
        for piece in body.chunks(step) {
            if src_peer.write_all(piece).is_err() {
                return;
            }
            std::thread::sleep(every);
        }
    });
    let reader = std::thread::spawn(move || {
        let mut got = Vec::new();
        let _ = dst_peer.read_to_end(&mut got);
    });
    let (result, took) = block_on(Driver::detect(), 256, || async move {
        let mut src =
            Conn::new(monoio::net::TcpStream::from_std(src_local).unwrap(), 4096).unwrap();
        let mut dst =
            Conn::new(monoio::net::TcpStream::from_std(dst_local).unwrap(), 4096).unwrap();
        let pipes = Rc::new(PipePool::new(1 << 20, 4));
        let mut mover = Mover::new(mode, pipes, Duration::from_secs(5), 16 * 1024);
        mover.set_rate_floor(floor);
        let moved = Moved::default();
        let started = std::time::Instant::now();
        let result = mover
            .exact(
                End {
                    conn: &mut src,
                    side: Side::Client,
                },
                End {
                    conn: &mut dst,
                    side: Side::Upstream,
                },
                len as u64,
                &moved,
            )
            .await;
        (result, started.elapsed())
    })
    .unwrap();
    drop(writer);
    let _ = reader.join();
    (result, took)
}

#[test]
fn a_trickle_below_the_floor_fails_on_its_side_within_two_windows() {
    for mode in [BodyMode::Splice, BodyMode::Copy] {
        // 100 bytes every 100 ms: 1 KB/s against a 16 KiB/s floor; the idle timeout (5 s)
        // never fires, since bytes keep coming.
        let floor = RateFloor {
            bytes_per_sec: 16 * 1024,
            window: Duration::from_secs(1),
        };
        let (result, took) = trickle(
            mode,
            64 * 1024,
            100,
            Duration::from_millis(100),
            Some(floor),
        );
        let err = result.expect_err("a trickle below the floor must fail");
        assert_eq!(err.side, Side::Client, "{mode:?}: {err}");
        assert_eq!(err.kind, Kind::Timeout, "{mode:?}: {err}");
        assert!(
            took < Duration::from_secs(4),
            "{mode:?}: cut after {took:?}, want within two 1 s windows"
        );
    }
}

#[test]
fn a_body_at_the_floor_is_not_cut() {
    // 4 KiB every 100 ms = 40 KiB/s against a 16 KiB/s floor: 2.5 s of body moves whole.
    let floor = RateFloor {
        bytes_per_sec: 16 * 1024,
        window: Duration::from_millis(1000),
    };
    let (result, _) = trickle(
        BodyMode::Splice,
        100 * 1024,
        4096,
        Duration::from_millis(100),
        Some(floor),
    );
    result.expect("a body above the floor moves");
}

#[test]
fn without_a_floor_a_trickle_is_only_held_to_the_idle_timeout() {
    let (result, _) = trickle(
        BodyMode::Copy,
        2 * 1024,
        100,
        Duration::from_millis(100),
        None,
    );
    result.expect("no floor: a slow but steady body completes");
}
