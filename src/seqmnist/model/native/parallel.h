// How the row-wise passes split their work over threads (gates.cpp, activations.cpp,
// norm.cpp).
#pragma once

#include <ATen/Parallel.h>

#include <algorithm>
#include <cstdint>

namespace seqmnist {

// Rows per task: about 16k elements, so small batches stay on one thread.
inline int64_t grain(int64_t width) {
  return std::max<int64_t>(1, 16384 / std::max<int64_t>(width, 1));
}

// Column sums over rows are taken in a fixed number of row chunks, each into its own
// row of partial sums, so the result does not depend on the thread count.
constexpr int64_t kChunks = 16;

inline int64_t chunk_count(int64_t rows) {
  return std::max<int64_t>(1, std::min(kChunks, rows));
}

// Runs body(k, begin, end) for each of ``chunks`` row chunks (on one thread when small).
template <typename Body>
void over_chunks(int64_t rows, int64_t width, int64_t chunks, const Body& body) {
  const int64_t chunk_grain = rows * width < 16384 ? chunks : 1;
  at::parallel_for(0, chunks, chunk_grain, [&](int64_t first, int64_t last) {
    for (int64_t k = first; k < last; ++k) body(k, k * rows / chunks, (k + 1) * rows / chunks);
  });
}

}  // namespace seqmnist
