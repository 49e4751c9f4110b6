//! The backward over a sequence, in reverse: each block of batch rows runs every step on one
//! thread — the recurrent product, the gate pass and the weight and input gradient products.

use super::*;

/// One step's backward over a block of batch rows, on one thread while the step's rows are in
/// cache:
/// 1. dh_rec = dgates_{t+1}·whᵀ (zero at the last step);
/// 2. one fused pass that, from dh_t (the loss's plus dh_rec) and the carried dc, writes the gate
///    pre-activation gradients dgates_t (and adds them into `dbias`), carries dc to the
///    previous step, and rebuilds h_t into `h` when that is not empty;
/// 3. the block's weight gradients into its part's `dw` ([x_t | h_{t−1}]ᵀ·dgates_t, the h part
///    one step late, when h_t has been rebuilt: dwx += x_tᵀ·dgates_t, dwh += h_tᵀ·dgates_{t+1});
/// 4. dx_t = dgates_t·wxᵀ.
///
/// So the gate gradients of only two steps are ever kept.
struct BackwardStep<'a, 'w, E: Elem> {
    /// Activated gates of step t, [B, 4H].
    gates: &'a [f32],
    c: &'a [f32],
    /// c_{t−1} (zeros at t = 0).
    c_prev: &'a [f32],
    dh: &'a [f32],
    /// x_t, [B, d_in].
    x: &'a [E],
    /// wxᵀ [4H, d_in] and whᵀ [4H, H], packed once for every step's products.
    wx_t: &'a E::Packed<'w>,
    wh_t: &'a E::Packed<'w>,
    /// Gate gradients of step t + 1 (empty at the last step).
    dgates_next: &'a [E],
    dgates: &'a mut [E],
    /// Scratch for dh_rec, [B, H].
    dh_rec: &'a mut [f32],
    /// In: dL/dc_t from the later steps; out: dL/dc_{t−1}.
    dc: &'a mut [f32],
    /// Scratch for h_t, [B, H] (empty at the last step, where no later step needs it).
    h: &'a mut [E],
    /// dx_t, [B, d_in].
    dx: &'a mut [f32],
    /// One [4H] bias gradient per part (the pass adds into the first).
    dbias: &'a mut [f32],
    /// One [d_in + H, 4H] weight gradient (dwx over dwh) per part.
    dw: &'a mut [f32],
    d_in: usize,
    hidden: usize,
}

versions! {
    fn backward_step_impl<E: Elem>(s: &mut BackwardStep<'_, '_, E>) {
        let hd = s.hidden;
        let keep_h = !s.h.is_empty();
        let dbias = &mut s.dbias[..4 * hd];
        let rows = s
            .gates
            .chunks_exact(4 * hd)
            .zip(s.dgates.chunks_exact_mut(4 * hd))
            .zip(s.c.chunks_exact(hd))
            .zip(s.c_prev.chunks_exact(hd))
            .zip(s.dh.chunks_exact(hd))
            .zip(s.dh_rec.chunks_exact(hd))
            .zip(s.dc.chunks_exact_mut(hd));
        for (r, ((((((gates, dgates), c), c_prev), dh), dh_rec), dc)) in rows.enumerate() {
            for u in (0..hd).step_by(LANES) {
                let w = LANES.min(hd - u);
                let i = load(gates, u, w);
                let f = load(gates, hd + u, w);
                let g = load(gates, 2 * hd + u, w);
                let o = load(gates, 3 * hd + u, w);
                let (ct, cp) = (load(c, u, w), load(c_prev, u, w));
                let (dht, dhr, mut dct) = (load(dh, u, w), load(dh_rec, u, w), load(dc, u, w));
                let [mut pi, mut pf, mut pg, mut po, mut hv] = [[0f32; LANES]; 5];
                for l in 0..LANES {
                    let tc = tanh(ct[l]);
                    let dhl = dht[l] + dhr[l];
                    let dcl = (dhl * o[l]).mul_add((-tc).mul_add(tc, 1.0), dct[l]);
                    pi[l] = dcl * g[l] * (i[l] - i[l] * i[l]);
                    pf[l] = dcl * cp[l] * (f[l] - f[l] * f[l]);
                    pg[l] = dcl * i[l] * (-g[l]).mul_add(g[l], 1.0);
                    po[l] = dhl * tc * (o[l] - o[l] * o[l]);
                    dct[l] = dcl * f[l];
                    hv[l] = o[l] * tc;
                }
                store(dc, u, w, &dct);
                for (k, block) in [pi, pf, pg, po].iter().enumerate() {
                    store(dgates, k * hd + u, w, block);
                    let db = &mut dbias[k * hd + u..k * hd + u + w];
                    for (d, &v) in db.iter_mut().zip(block) {
                        *d += v;
                    }
                }
                if keep_h {
                    store(s.h, r * hd + u, w, &hv);
                }
            }
        }
    }
}

fn backward_pass<E: Elem>(s: &mut BackwardStep<'_, '_, E>) {
    dispatch!(backward_step_impl::<E>(s))
}

fn backward_step<E: Elem>(mut s: BackwardStep<'_, '_, E>) {
    let (d, hd) = (s.d_in, s.hidden);
    let g4 = 4 * hd;
    let rows = s.dc.len() / hd;
    let later = !s.dgates_next.is_empty();
    if later {
        E::matmul_packed_serial(
            MatMut::row_major(s.dh_rec, rows, hd),
            Mat::row_major(s.dgates_next, rows, g4),
            s.wh_t,
            false,
        );
    } else {
        s.dh_rec.fill(0.0);
    }
    backward_pass(&mut s);
    let dgates = Mat::row_major(&*s.dgates, rows, g4);
    let (dwx, dwh) = s.dw[..(d + hd) * g4].split_at_mut(d * g4);
    E::matmul_serial(
        MatMut::row_major(dwx, d, g4),
        Mat::row_major(s.x, rows, d).t(),
        dgates,
        true,
    );
    if later {
        E::matmul_serial(
            MatMut::row_major(dwh, hd, g4),
            Mat::row_major(&*s.h, rows, hd).t(),
            Mat::row_major(s.dgates_next, rows, g4),
            true,
        );
    }
    E::matmul_packed_serial(MatMut::row_major(s.dx, rows, d), dgates, s.wx_t, false);
}

/// What every block of rows reads.
struct BackShared<'a, 'w, E: Elem> {
    tape: &'a LstmTape,
    /// dL/dh, [T, B, H].
    dh: &'a [f32],
    /// [T, B, d_in], lowered.
    x: &'a [E],
    wx_t: &'a E::Packed<'w>,
    wh_t: &'a E::Packed<'w>,
    d_in: usize,
}

/// One block of batch rows: its dx rows of every step and its own weight gradients.
struct BackBlock<'a> {
    first_row: usize,
    rows: usize,
    dx: Vec<&'a mut [f32]>,
    dbias: &'a mut [f32],
    dw: &'a mut [f32],
}

/// Every step, in reverse, over one block of rows, on the calling thread.
fn run_back_block<E: Elem>(s: &BackShared<'_, '_, E>, mut b: BackBlock) {
    let tape = s.tape;
    let (steps, batch, hd, d) = (tape.steps, tape.batch, tape.hidden, s.d_in);
    let (rows, g4) = (b.rows, 4 * tape.hidden);
    // Rows `first_row..` of step t of a [T, B, width] buffer.
    let at = |t: usize, width: usize| {
        let start = (t * batch + b.first_row) * width;
        start..start + rows * width
    };
    let mut dgates = [Buf::<E>::take(rows * g4), Buf::<E>::take(rows * g4)];
    let mut h_scratch = Buf::<E>::take(rows * hd);
    let mut dh_rec = vec![0f32; rows * hd];
    let mut dc = vec![0f32; rows * hd];
    let zeros = vec![0f32; rows * hd];
    for t in (0..steps).rev() {
        let [even, odd] = &mut dgates;
        let (dgates_t, dgates_next) = if t % 2 == 0 { (even, odd) } else { (odd, even) };
        let last = t + 1 == steps;
        backward_step(BackwardStep {
            gates: &tape.gates[at(t, g4)],
            c: &tape.cells[at(t, hd)],
            c_prev: if t == 0 {
                &zeros[..]
            } else {
                &tape.cells[at(t - 1, hd)]
            },
            dh: &s.dh[at(t, hd)],
            x: &s.x[at(t, d)],
            wx_t: s.wx_t,
            wh_t: s.wh_t,
            dgates_next: if last { &[] } else { &dgates_next[..] },
            dgates: dgates_t,
            dh_rec: &mut dh_rec,
            dc: &mut dc,
            h: if last { &mut [] } else { &mut h_scratch[..] },
            dx: &mut *b.dx[t],
            dbias: &mut *b.dbias,
            dw: &mut *b.dw,
            d_in: d,
            hidden: hd,
        });
    }
}

/// `x` is the forward's input, already in the matmul type.
pub(super) fn backward<E: Elem>(
    x: &[E],
    dh: &[f32],
    tape: &LstmTape,
    w: &LstmWeights,
    parts: Option<usize>,
) -> LstmGrads {
    w.check();
    let (steps, batch) = (tape.steps, tape.batch);
    let (d, hd) = (w.d_in, w.hidden);
    assert_eq!(tape.hidden, hd, "lstm_backward: tape from another layer");
    let x_dims = [steps, batch, d];
    expect_len(
        "lstm_backward: x must be [steps, batch, d_in]",
        x.len(),
        &x_dims,
    );
    let h_dims = [steps, batch, hd];
    expect_len(
        "lstm_backward: dh must be [steps, batch, hidden]",
        dh.len(),
        &h_dims,
    );
    let g4 = 4 * hd;
    let n = steps * batch;
    let parts = parts.unwrap_or_else(|| default_parts(batch, hd));

    if n == 0 || hd == 0 {
        return LstmGrads {
            dx: vec![0f32; n * d],
            dwx: vec![0f32; d * g4],
            dbias: vec![0f32; g4],
            dwh: vec![0f32; hd * g4],
        };
    }
    // Per block of rows, the weight gradients accumulate over the steps (summed in block order
    // at the end); each block runs every step on one thread (see `run_blocks`).
    let dk = d + hd;
    // The products with wᵀ read row-major copies of the transposes: the f32 gemm runs at about
    // half speed on a transposed (column-major) right operand.
    let (wxt, wht) = (transposed(w.wx, d, g4), transposed(w.wh, hd, g4));
    let (wxl, whl) = (E::lower(&wxt), E::lower(&wht));
    let (wxl, whl) = (
        E::pack(Mat::row_major(&wxl, g4, d)),
        E::pack(Mat::row_major(&whl, g4, hd)),
    );
    let bounds = row_blocks(batch, parts);
    let blocks_n = bounds.len() - 1;
    let mut dbias_parts = vec![0f32; blocks_n * g4];
    let mut dw_parts = vec![0f32; blocks_n * dk * g4];
    let mut dx = Buf::<f32>::take(n * d);
    let shared = BackShared {
        tape,
        dh,
        x,
        wx_t: &wxl,
        wh_t: &whl,
        d_in: d,
    };
    let blocks: Vec<BackBlock> = bounds
        .windows(2)
        .zip(block_rows(&mut dx, batch, d, &bounds))
        .zip(
            dbias_parts
                .chunks_exact_mut(g4)
                .zip(dw_parts.chunks_exact_mut(dk * g4)),
        )
        .map(|((r, dx), (dbias, dw))| BackBlock {
            first_row: r[0],
            rows: r[1] - r[0],
            dx,
            dbias,
            dw,
        })
        .collect();
    run_blocks(blocks, &|block| run_back_block(&shared, block));
    let sum_parts = |partials: &[f32], len: usize| {
        let mut total = vec![0f32; len];
        for part in partials.chunks_exact(len) {
            for (t, &v) in total.iter_mut().zip(part) {
                *t += v;
            }
        }
        total
    };
    let mut dwx = sum_parts(&dw_parts, dk * g4);
    let dwh = dwx.split_off(d * g4);
    LstmGrads {
        dx: dx.into_vec(),
        dwx,
        dbias: sum_parts(&dbias_parts, g4),
        dwh,
    }
}
