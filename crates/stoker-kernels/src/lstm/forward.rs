//! The forward over a sequence: each block of batch rows runs every step on one thread, both
//! products and the gate pass.

use super::*;

/// One step's forward over a block of batch rows, on one thread while its [B, 4H] gates are in
/// cache: the gate pre-activations [x_t | h_{t−1}]·[wx; wh] (one serial product over the
/// concatenated input, so the gates are written once and the product's K is d_in + H), then one
/// fused pass that activates them (with the bias; in place when the tape keeps them), writes
/// c_t and h_t, and h_t into the next step's concatenated input, both in E.
struct ForwardStep<'a, 'w, E: Elem> {
    gates: &'a mut [f32],
    /// Whether the activated gates are stored back (the tape's); inference only reads them.
    keep_gates: bool,
    /// [x_t | h_{t−1}], [B, d_in + H] (h_{−1} = 0).
    xh: &'a [E],
    /// [wx; wh], [d_in + H, 4H], packed once for every step's product.
    wxh: &'a E::Packed<'w>,
    bias: &'a [f32],
    c_prev: &'a [f32],
    c: &'a mut [f32],
    h: &'a mut [E],
    /// The next step's [x_{t+1} | h_t]: h_t goes into its last H columns.
    xh_next: &'a mut [E],
    d_in: usize,
    hidden: usize,
}

/// One block of LANES cells: activates the gate pre-activations in place (with their biases)
/// and returns (c_t, h_t).
#[inline(always)]
fn cell_block(
    [i, f, g, o]: [&mut [f32; LANES]; 4],
    [bi, bf, bg, bo]: [&[f32; LANES]; 4],
    c_prev: &[f32; LANES],
) -> ([f32; LANES], [f32; LANES]) {
    let mut cell = [0f32; LANES];
    let mut out = [0f32; LANES];
    for l in 0..LANES {
        i[l] = sigmoid(i[l] + bi[l]);
        f[l] = sigmoid(f[l] + bf[l]);
        g[l] = tanh(g[l] + bg[l]);
        o[l] = sigmoid(o[l] + bo[l]);
        cell[l] = f[l].mul_add(c_prev[l], i[l] * g[l]);
        out[l] = o[l] * tanh(cell[l]);
    }
    (cell, out)
}

/// `s` cut into its four gates' [hd] slices.
fn quarters<T>(s: &mut [T], hd: usize) -> [&mut [T]; 4] {
    let (i, rest) = s.split_at_mut(hd);
    let (f, rest) = rest.split_at_mut(hd);
    let (g, o) = rest.split_at_mut(hd);
    [i, f, g, o]
}

versions! {
    fn forward_step_impl<E: Elem>(s: ForwardStep<'_, '_, E>) {
        let (hd, ld) = (s.hidden, s.d_in + s.hidden);
        // Whole blocks as fixed-size arrays, one index addressing each block's operands (the
        // tail, if any, goes through `load` / `store`). Offsets recomputed from thirteen
        // slices per block, each through a stack reload and a bounds check, made this pass
        // 2–3 % slower (paired `bench/ab.sh`, LSTM inference).
        let blocks = hd / LANES;
        let full = blocks * LANES;
        let bias: [&[[f32; LANES]]; 4] =
            std::array::from_fn(|k| s.bias[k * hd..k * hd + full].as_chunks().0);
        let rows = s
            .gates
            .chunks_exact_mut(4 * hd)
            .zip(s.c_prev.chunks_exact(hd))
            .zip(s.c.chunks_exact_mut(hd))
            .zip(s.h.chunks_exact_mut(hd))
            .zip(s.xh_next.chunks_exact_mut(ld));
        for ((((gates, c_prev), c), h), next) in rows {
            let next = &mut next[s.d_in..];
            let [gi, gf, gg, go] = quarters(gates, hd);
            let [gi, gf, gg, go] = [gi, gf, gg, go].map(|q| q[..full].as_chunks_mut().0);
            let cp = c_prev[..full].as_chunks().0;
            let cb = c[..full].as_chunks_mut().0;
            let hb = h[..full].as_chunks_mut().0;
            let nb = next[..full].as_chunks_mut().0;
            for b in 0..blocks {
                // Copies: inference does not store the activated gates back.
                let (mut i, mut f, mut g, mut o) = (gi[b], gf[b], gg[b], go[b]);
                let (cell, out) = cell_block(
                    [&mut i, &mut f, &mut g, &mut o],
                    [&bias[0][b], &bias[1][b], &bias[2][b], &bias[3][b]],
                    &cp[b],
                );
                if s.keep_gates {
                    (gi[b], gf[b], gg[b], go[b]) = (i, f, g, o);
                }
                let mut low = [E::default(); LANES];
                for (l, &v) in low.iter_mut().zip(&out) {
                    *l = E::from_f32(v);
                }
                cb[b] = cell;
                hb[b] = low;
                nb[b] = low;
            }
            if full < hd {
                let w = hd - full;
                let mut pre = [0, 1, 2, 3].map(|k| load(gates, k * hd + full, w));
                let bias_tail = [0, 1, 2, 3].map(|k| load(s.bias, k * hd + full, w));
                let [i, f, g, o] = &mut pre;
                let (cell, out) = cell_block(
                    [i, f, g, o],
                    [&bias_tail[0], &bias_tail[1], &bias_tail[2], &bias_tail[3]],
                    &load(c_prev, full, w),
                );
                if s.keep_gates {
                    for (k, block) in pre.iter().enumerate() {
                        store(gates, k * hd + full, w, block);
                    }
                }
                store(c, full, w, &cell);
                store(h, full, w, &out);
                store(next, full, w, &out);
            }
        }
    }
}

fn forward_step<E: Elem>(s: ForwardStep<'_, '_, E>) {
    let (ld, hd) = (s.d_in + s.hidden, s.hidden);
    let rows = s.gates.len() / (4 * hd);
    E::matmul_packed_serial(
        MatMut::row_major(s.gates, rows, 4 * hd),
        Mat::row_major(s.xh, rows, ld),
        s.wxh,
        false,
    );
    dispatch!(forward_step_impl::<E>(s))
}

/// What every block of rows reads: the lowered input and weights, and the shapes.
struct Shared<'a, 'w, E: Elem> {
    /// [T, B, d_in].
    x: &'a [E],
    /// [wx; wh], [d_in + H, 4H], packed once.
    wxh: &'a E::Packed<'w>,
    bias: &'a [f32],
    batch: usize,
    d_in: usize,
    hidden: usize,
}

/// One block of batch rows and its rows of every slot of the gate, cell and output buffers.
struct Block<'a, E> {
    first_row: usize,
    rows: usize,
    gates: Vec<&'a mut [f32]>,
    cells: Vec<&'a mut [f32]>,
    h: Vec<&'a mut [E]>,
}

/// Slot `prev` (read) and slot `cur` (written) of a block's slots (`prev != cur`).
fn previous_and_current<'s>(
    slots: &'s mut [&mut [f32]],
    prev: usize,
    cur: usize,
) -> (&'s [f32], &'s mut [f32]) {
    assert_ne!(prev, cur);
    if prev < cur {
        let (done, rest) = slots.split_at_mut(cur);
        (&*done[prev], &mut *rest[0])
    } else {
        let (rest, done) = slots.split_at_mut(prev);
        (&*done[0], &mut *rest[cur])
    }
}

/// Every step over one block of rows, on the calling thread: the rows' recurrence needs no
/// other rows, so blocks never wait for each other.
fn run_block<E: Elem>(s: &Shared<'_, '_, E>, keep_gates: bool, mut b: Block<E>) {
    let (d, hd, rows) = (s.d_in, s.hidden, b.rows);
    let steps = b.h.len();
    let (gate_slots, cell_slots) = (b.gates.len(), b.cells.len());
    // [x_t | h_{t−1}] read by step t and [x_{t+1} | h_t] written by it, in turn; h_{−1} = 0.
    let ld = d + hd;
    let mut xh = [vec![E::default(); rows * ld], vec![E::default(); rows * ld]];
    let zeros = vec![0f32; rows * hd];
    for t in 0..steps {
        let [even, odd] = &mut xh;
        let (xh_t, xh_next) = if t % 2 == 0 { (even, odd) } else { (odd, even) };
        let x_at = (t * s.batch + b.first_row) * d;
        for (row, x) in xh_t
            .chunks_exact_mut(ld)
            .zip(s.x[x_at..x_at + rows * d].chunks_exact(d.max(1)))
        {
            row[..d].copy_from_slice(x);
        }
        let (c_prev, c) = if t == 0 {
            (&zeros[..], &mut *b.cells[0])
        } else {
            previous_and_current(&mut b.cells, (t - 1) % cell_slots, t % cell_slots)
        };
        forward_step(ForwardStep {
            gates: &mut *b.gates[t % gate_slots],
            keep_gates,
            xh: xh_t,
            wxh: s.wxh,
            bias: s.bias,
            c_prev,
            c,
            h: &mut *b.h[t],
            xh_next,
            d_in: d,
            hidden: hd,
        });
    }
}

/// `parts`: how many row blocks the fused passes run in (None: by the shape and thread count).
/// `x` is already in the matmul type; so is the output h.
pub(super) fn forward<E: Elem>(
    x: &[E],
    steps: usize,
    batch: usize,
    w: &LstmWeights,
    keep_tape: bool,
    parts: Option<usize>,
) -> (Buf<E>, Option<LstmTape>) {
    w.check();
    let (d, hd) = (w.d_in, w.hidden);
    let x_dims = [steps, batch, d];
    expect_len(
        "lstm_forward: x must be [steps, batch, d_in]",
        x.len(),
        &x_dims,
    );
    // The state buffers: [T, B, 4H] gates at most.
    crate::size::product("lstm_forward: gates", &[steps, batch, 4, hd]);
    let g4 = 4 * hd;
    let n = steps * batch;
    let (bh, bg) = (batch * hd, batch * g4);
    let parts = parts.unwrap_or_else(|| default_parts(batch, hd));

    // Without a tape only one step's gates and two steps' cells are live: the step's gates
    // stay in cache instead of streaming a [T·B, 4H] buffer through memory three times.
    let gate_slots = if keep_tape { steps } else { 1 };
    let cell_slots = if keep_tape { steps } else { 2 };
    // Every element of these is written below (each step's input product overwrites its gates).
    let mut gates = Buf::<f32>::take(gate_slots * bg);
    let mut cells = Buf::<f32>::take(cell_slots * bh);
    let mut h = Buf::<E>::take(n * hd);
    if n > 0 && hd > 0 {
        let stacked = [w.wx, w.wh].concat();
        let lowered = E::lower(&stacked);
        let wxh = E::pack(Mat::row_major(&lowered, d + hd, g4));
        // Each block of batch rows runs every step on one thread (see `run_blocks`).
        let bounds = row_blocks(batch, parts);
        let gate_rows = block_rows(&mut gates, batch, g4, &bounds);
        let cell_rows = block_rows(&mut cells, batch, hd, &bounds);
        let h_rows = block_rows(&mut h, batch, hd, &bounds);
        let shared = Shared {
            x,
            wxh: &wxh,
            bias: w.bias,
            batch,
            d_in: d,
            hidden: hd,
        };
        let blocks: Vec<Block<E>> = bounds
            .windows(2)
            .zip(gate_rows.into_iter().zip(cell_rows).zip(h_rows))
            .map(|(r, ((gates, cells), h))| Block {
                first_row: r[0],
                rows: r[1] - r[0],
                gates,
                cells,
                h,
            })
            .collect();
        run_blocks(blocks, &|block| run_block(&shared, keep_tape, block));
    }
    let tape = keep_tape.then_some(LstmTape {
        steps,
        batch,
        hidden: hd,
        gates,
        cells,
    });
    (h, tape)
}
