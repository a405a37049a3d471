"""a4, a solution: a k-major a tile, its rows padded by one float."""
from numba import cuda, float32

BM, BN, BK, TM, TN = 32, 32, 8, 4, 4
THREADS = (BM // TM) * (BN // TN)
COPIES = BM * BK // THREADS
A_ROW = BM + 1           # the transposed tile's rows, padded by one float (a constant: shared shapes must be)


@cuda.jit
def matmul(a, b, c):
    # a_tile[kk, i] = a[m0 + i, k0 + kk]. Reads a_tile[kk, 4 ty + i] across a warp: 4 words
    # in 4 banks. Stores a_tile[e % 8, e // 8] for e = 0..31: 8 words in each of 4 banks
    # without the pad (8 passes); with it, word 33 kk + i is in bank (kk + i) % 32: 4 passes.
    a_tile = cuda.shared.array((BK, A_ROW), float32)
    b_tile = cuda.shared.array((BK, BN), float32)
    acc = cuda.local.array(16, float32)
    b_frag = cuda.local.array(4, float32)
    t = cuda.threadIdx.x
    ty, tx = t // (BN // TN), t % (BN // TN)
    m0, n0 = cuda.blockIdx.y * BM, cuda.blockIdx.x * BN
    for e in range(TM * TN):
        acc[e] = float32(0.0)
    for k0 in range(0, a.shape[1], BK):
        for p in range(COPIES):
            e = t + THREADS * p
            a_tile[e % BK, e // BK] = a[m0 + e // BK, k0 + e % BK]
            b_tile[e // BN, e % BN] = b[k0 + e // BN, n0 + e % BN]
        cuda.syncthreads()
        for kk in range(BK):
            for j in range(TN):
                b_frag[j] = b_tile[kk, TN * tx + j]
            for i in range(TM):
                av = a_tile[kk, TM * ty + i]
                for j in range(TN):
                    acc[i * TN + j] += av * b_frag[j]
        cuda.syncthreads()
    for i in range(TM):
        for j in range(TN):
            c[m0 + TM * ty + i, n0 + TN * tx + j] = acc[i * TN + j]


def launch(a, b, c):
    matmul[(b.shape[1] // BN, a.shape[0] // BM), THREADS](a, b, c)


# Rows 0, 4, 8, 12 of the tile are 32 floats apart: one bank, four words, four passes.
SKELETON_READ_WAYS = 4
