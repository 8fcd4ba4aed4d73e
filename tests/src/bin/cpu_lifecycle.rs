//! Lifecycle and coexistence (the class of tikv/tikv#10131): heap and CPU
//! sampling together under allocation-heavy threads that come and go;
//! 100 start/stop cycles; a SIGPROF sent by hand after stop. The process must
//! neither crash, hang nor be killed; exits 0 and prints `ok`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use lowprof::SampledAlloc;

#[global_allocator]
static ALLOC: SampledAlloc<std::alloc::System> = SampledAlloc::new(std::alloc::System);

#[inline(never)]
fn churn(until: Instant) -> usize {
    let mut kept = Vec::new();
    let mut n = 0;
    while Instant::now() < until {
        let v: Vec<u8> = vec![n as u8; 64 + n % 5000];
        if n % 7 == 0 {
            kept.push(v);
        }
        if kept.len() > 500 {
            kept.clear();
        }
        n += 1;
    }
    black_box(kept.len()) + n
}

fn main() {
    // Heap + CPU at 1000 Hz while threads are created and ended all the time.
    let profiler = lowprof::Profiler::builder().cpu_hz(1000).start().unwrap();
    let until = Instant::now() + Duration::from_secs(2);
    let mut total = 0;
    while Instant::now() < until {
        let batch: Vec<_> = (0..4)
            .map(|_| std::thread::spawn(move || churn(Instant::now() + Duration::from_millis(50))))
            .collect();
        for t in batch {
            total += t.join().unwrap();
        }
    }
    let report = profiler.stop().unwrap();
    let heap = report.heap.unwrap();
    let cpu = report.cpu.unwrap();
    assert!(heap.samples.len() > 10, "heap samples: {}", heap.samples.len());
    assert!(cpu.samples.len() > 10, "cpu samples: {}", cpu.samples.len());
    println!(
        "churn: {total} allocations, {} heap and {} cpu samples",
        heap.samples.len(),
        cpu.samples.len()
    );

    // 100 start/stop cycles of the whole profiler.
    for i in 0..100 {
        let p = lowprof::Profiler::builder().cpu_hz(1000).start().unwrap();
        black_box(vec![i as u8; 1 << 16]);
        if i % 10 == 0 {
            p.stop().unwrap();
        } else {
            drop(p);
        }
    }

    // A SIGPROF by hand after stop: the handler stays installed as a no-op.
    // SAFETY: raising a signal in our own process.
    assert_eq!(unsafe { libc::raise(libc::SIGPROF) }, 0);
    // And to another thread.
    let t = std::thread::spawn(|| {
        // SAFETY: as above, for the calling thread only.
        unsafe { libc::raise(libc::SIGPROF) };
        std::thread::sleep(Duration::from_millis(10));
    });
    t.join().unwrap();
    println!("ok");
}
