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

versions! {
    fn forward_step_impl<E: Elem>(s: ForwardStep<'_, '_, E>) {
        let (hd, ld) = (s.hidden, s.d_in + s.hidden);
        let bias = &s.bias[..4 * hd];
        let rows = s
            .gates
            .chunks_exact_mut(4 * hd)
            .zip(s.c_prev.chunks_exact(hd))
            .zip(s.c.chunks_exact_mut(hd))
            .zip(s.h.chunks_exact_mut(hd));
        for (r, (((gates, c_prev), c), h)) in rows.enumerate() {
            for u in (0..hd).step_by(LANES) {
                let w = LANES.min(hd - u);
                // (No `array::map` here: its closure is not inlined into the AVX-512 build.)
                let mut i = load(gates, u, w);
                let mut f = load(gates, hd + u, w);
                let mut g = load(gates, 2 * hd + u, w);
                let mut o = load(gates, 3 * hd + u, w);
                let bi = load(bias, u, w);
                let bf = load(bias, hd + u, w);
                let bg = load(bias, 2 * hd + u, w);
                let bo = load(bias, 3 * hd + u, w);
                let cp = load(c_prev, u, w);
                let mut cell = [0f32; LANES];
                let mut out = [0f32; LANES];
                for l in 0..LANES {
                    i[l] = sigmoid(i[l] + bi[l]);
                    f[l] = sigmoid(f[l] + bf[l]);
                    g[l] = tanh(g[l] + bg[l]);
                    o[l] = sigmoid(o[l] + bo[l]);
                    cell[l] = f[l].mul_add(cp[l], i[l] * g[l]);
                    out[l] = o[l] * tanh(cell[l]);
                }
                if s.keep_gates {
                    for (k, block) in [i, f, g, o].iter().enumerate() {
                        store(gates, k * hd + u, w, block);
                    }
                }
                store(c, u, w, &cell);
                store(h, u, w, &out);
                store(s.xh_next, r * ld + s.d_in + u, w, &out);
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
