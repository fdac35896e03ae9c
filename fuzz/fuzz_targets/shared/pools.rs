//! Thread pools the fuzz targets share, included with `#[path]`.

use std::sync::{Arc, LazyLock};

/// One pool per thread count (1 to 4), shared by every input: no threads
/// start or end while fuzzing (and none are left winding down when
/// LeakSanitizer looks).
pub static POOLS: LazyLock<Vec<Arc<rayon::ThreadPool>>> = LazyLock::new(|| {
    (1..=4)
        .map(|n| {
            Arc::new(
                rayon::ThreadPoolBuilder::new()
                    .num_threads(n)
                    .build()
                    .unwrap(),
            )
        })
        .collect()
});

/// The pool of `threads` threads (1 to 4).
pub fn pool(threads: usize) -> &'static Arc<rayon::ThreadPool> {
    &POOLS[threads.clamp(1, 4) - 1]
}
