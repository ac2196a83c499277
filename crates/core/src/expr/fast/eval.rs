//! Evaluating a plan on `serde_json::Value`, borrowing the input where it can.

#[allow(clippy::wildcard_imports)]
use super::*;

pub(super) struct Cx<'b> {
    pub(super) vars: &'b dyn Bindings,
}

pub(super) type Sink<'s, 'v> = dyn FnMut(Cow<'v, Value>) -> R<Flow> + 's;

impl Cx<'_> {
    /// Feeds every output of `n` on `input` to `f`, until `f` asks to stop.
    pub(super) fn each<'v>(&self, n: &'v Node, input: &'v Value, f: &mut Sink<'_, 'v>) -> R<Flow> {
        match n {
            Node::Path(.., Arity::One)
            | Node::Pipe(.., Arity::One)
            | Node::Alt(.., Arity::One)
            | Node::If(.., Arity::One) => f(self.one(n, input)?),
            Node::Path(base, steps, Arity::Stream) => {
                let mut go = |b: Cow<'v, Value>| match b {
                    Cow::Borrowed(b) => walk(b, steps, &mut |v| f(Cow::Borrowed(v))),
                    Cow::Owned(o) => walk(&o, steps, &mut |v| f(Cow::Owned(v.clone()))),
                };
                if is_single(base) {
                    go(self.one(base, input)?)
                } else {
                    self.each(base, input, &mut go)
                }
            }
            Node::Pipe(a, b, Arity::Stream) => self.each(a, input, &mut |v| match (v, &**b) {
                (Cow::Borrowed(v), _) => self.each(b, v, f),
                // `[…] | sort_by(f)`: the array is this pipe's own, so sort it where it is.
                (Cow::Owned(Value::Array(items)), Node::SortBy(key)) => {
                    f(Cow::Owned(Value::Array(self.sort_items(key, items)?)))
                }
                (Cow::Owned(o), _) => self.each(b, &o, &mut |w| f(Cow::Owned(w.into_owned()))),
            }),
            Node::Comma(a, b) => match self.each(a, input, f)? {
                Flow::Stop => Ok(Flow::Stop),
                Flow::More => self.each(b, input, f),
            },
            Node::Alt(a, b, Arity::Stream) => {
                let mut any = false;
                let flow = self.each(a, input, &mut |v| {
                    if truthy(&v) {
                        any = true;
                        f(v)
                    } else {
                        Ok(Flow::More)
                    }
                })?;
                if any {
                    Ok(flow)
                } else {
                    self.each(b, input, f)
                }
            }
            Node::If(branches, otherwise, Arity::Stream) => {
                for (cond, then) in branches {
                    if truthy(&*self.one(cond, input)?) {
                        return self.each(then, input, f);
                    }
                }
                match otherwise {
                    Some(e) => self.each(e, input, f),
                    None => f(Cow::Borrowed(input)),
                }
            }
            Node::Empty => Ok(Flow::More),
            Node::Select(cond) => {
                if truthy(&*self.one(cond, input)?) {
                    f(Cow::Borrowed(input))
                } else {
                    Ok(Flow::More)
                }
            }
            _ => f(self.one(n, input)?),
        }
    }

    /// The one output of `n`, which [`is_single`] guarantees (or a fallback).
    fn one<'v>(&self, n: &'v Node, input: &'v Value) -> R<Cow<'v, Value>> {
        Ok(match n {
            Node::Id => Cow::Borrowed(input),
            Node::Const(v) => Cow::Borrowed(v),
            Node::Var(name) => Cow::Owned(self.vars.get(name).unwrap_or(Value::Null)),
            Node::Path(base, steps, Arity::One) => match self.one(base, input)? {
                Cow::Borrowed(b) => Cow::Borrowed(follow(b, steps)?),
                Cow::Owned(o) => Cow::Owned(take_at(o, steps)?),
            },
            Node::Pipe(a, b, Arity::One) => match (self.one(a, input)?, &**b) {
                (Cow::Borrowed(v), _) => self.one(b, v)?,
                // `[…] | sort_by(f)`: the array is this pipe's own, so sort it where it is.
                (Cow::Owned(Value::Array(items)), Node::SortBy(key)) => {
                    Cow::Owned(Value::Array(self.sort_items(key, items)?))
                }
                (Cow::Owned(o), _) => Cow::Owned(self.one(b, &o)?.into_owned()),
            },
            Node::Alt(a, b, Arity::One) => {
                let l = self.one(a, input)?;
                if truthy(&l) { l } else { self.one(b, input)? }
            }
            Node::If(branches, otherwise, Arity::One) => {
                for (cond, then) in branches {
                    if truthy(&*self.one(cond, input)?) {
                        return self.one(then, input);
                    }
                }
                match otherwise {
                    Some(e) => self.one(e, input)?,
                    None => Cow::Borrowed(input),
                }
            }
            Node::Path(..) | Node::Pipe(..) | Node::Alt(..) | Node::If(..) => {
                self.first_of(n, input)?
            }
            Node::And(a, b) => Cow::Owned(Value::Bool(
                truthy(&*self.one(a, input)?) && truthy(&*self.one(b, input)?),
            )),
            Node::Or(a, b) => Cow::Owned(Value::Bool(
                truthy(&*self.one(a, input)?) || truthy(&*self.one(b, input)?),
            )),
            Node::Cmp(op, a, b) => {
                let (l, r) = (self.one(a, input)?, self.one(b, input)?);
                let yes = match op {
                    CmpOp::Eq => jq_eq(&l, &r)?,
                    CmpOp::Ne => !jq_eq(&l, &r)?,
                    CmpOp::Lt => jq_cmp(&l, &r)? == Ordering::Less,
                    CmpOp::Le => jq_cmp(&l, &r)? != Ordering::Greater,
                    CmpOp::Gt => jq_cmp(&l, &r)? == Ordering::Greater,
                    CmpOp::Ge => jq_cmp(&l, &r)? != Ordering::Less,
                };
                Cow::Owned(Value::Bool(yes))
            }
            Node::Math(op, a, b) => {
                let (l, r) = (self.one(a, input)?, self.one(b, input)?);
                Cow::Owned(math(*op, l, r)?)
            }
            Node::Neg(a) => match num(&*self.one(a, input)?)? {
                N::I(i) => Cow::Owned(Value::Number(i.checked_neg().ok_or(Fallback)?.into())),
                N::F(x) => Cow::Owned(Value::Number(Number::from_f64(-x).ok_or(Fallback)?)),
            },
            Node::Arr(None) => Cow::Owned(Value::Array(Vec::new())),
            Node::Arr(Some(inner)) => {
                let mut items = Vec::new();
                self.each(inner, input, &mut |v| {
                    items.push(v.into_owned());
                    Ok(Flow::More)
                })?;
                Cow::Owned(Value::Array(items))
            }
            Node::Obj(entries, Some(shape)) => {
                // Same keys in the same order: the copy keeps the shape's hashes.
                let mut m = shape.keys.clone();
                for (slot, (_, v)) in m.values_mut().zip(entries) {
                    *slot = self.one(v, input)?.into_owned();
                }
                Cow::Owned(Value::Object(m))
            }
            Node::Obj(entries, None) => {
                let mut m = Map::with_capacity(entries.len());
                for (k, v) in entries {
                    let key = match k {
                        Key::Lit(s) => s.clone(),
                        Key::Expr(e) => match self.one(e, input)?.into_owned() {
                            Value::String(s) => s,
                            _ => return Err(Fallback),
                        },
                    };
                    m.insert(key, self.one(v, input)?.into_owned());
                }
                Cow::Owned(Value::Object(m))
            }
            Node::Str(pieces) => {
                let mut s = String::new();
                for p in pieces {
                    match p {
                        StrPiece::Lit(t) => s.push_str(t),
                        StrPiece::Expr(e) => interpolate(&mut s, &*self.one(e, input)?)?,
                    }
                }
                Cow::Owned(Value::String(s))
            }
            Node::Not => Cow::Owned(Value::Bool(!truthy(input))),
            Node::Length => Cow::Owned(length(input)?),
            Node::Type => Cow::Owned(Value::String(type_name(input).to_owned())),
            Node::SortBy(key) => Cow::Owned(self.sort_by(key, input)?),
            Node::Test(re) => match input {
                Value::String(s) => Cow::Owned(Value::Bool(re.is_match(s))),
                _ => return Err(Fallback),
            },
            Node::Has(k) => {
                let k = self.one(k, input)?;
                Cow::Owned(Value::Bool(match (input, &*k) {
                    (Value::Object(m), Value::String(k)) => field(m, k).is_some(),
                    // jaq counts negative indices from the end; those are jaq's.
                    (Value::Array(a), Value::Number(i)) => match i.as_u64() {
                        Some(i) => i < a.len() as u64,
                        None => return Err(Fallback),
                    },
                    _ => return Err(Fallback),
                }))
            }
            Node::Update(keys, op, rhs) => Cow::Owned(self.update(keys, *op, rhs, input)?),
            Node::Comma(..) | Node::Empty | Node::Select(_) => return Err(Fallback),
        })
    }

    /// The first output of `n` on `input`, `null` if it has none; not settled.
    pub(super) fn first_value(&self, n: &Node, input: &Value) -> R<Value> {
        let mut first = None;
        self.each(n, input, &mut |v| {
            first = Some(v.into_owned());
            Ok(Flow::Stop)
        })?;
        Ok(first.unwrap_or(Value::Null))
    }

    /// The first output of a stream (never reached for the nodes lowering accepts: `one` is
    /// asked only of single nodes), or a fallback if it has none.
    #[cold]
    fn first_of<'v>(&self, n: &'v Node, input: &'v Value) -> R<Cow<'v, Value>> {
        let mut out = None;
        self.each(n, input, &mut |v| {
            out = Some(v);
            Ok(Flow::Stop)
        })?;
        out.ok_or(Fallback)
    }

    fn sort_by(&self, key: &Node, input: &Value) -> R<Value> {
        let Value::Array(items) = input else {
            return Err(Fallback);
        };
        self.sort_items(key, items.clone()).map(Value::Array)
    }

    /// `sort_by(key)`: a stable sort on the arrays of `key`'s outputs, as jaq's.
    fn sort_items(&self, key: &Node, items: Vec<Value>) -> R<Vec<Value>> {
        if is_single(key) {
            return self.sort_items_by_one(key, items);
        }
        let mut keyed = Vec::with_capacity(items.len());
        for item in items {
            let mut k = Vec::new();
            self.each(key, &item, &mut |v| {
                k.push(v.into_owned());
                Ok(Flow::More)
            })?;
            keyed.push((k, item));
        }
        // Every comparison must be decidable before sorting, so that the comparator never has
        // to fall back halfway.
        if !keyed.iter().all(|(k, _)| k.iter().all(orderable)) {
            return Err(Fallback);
        }
        keyed.sort_by(|a, b| cmp_seq(&a.0, &b.0).unwrap_or(Ordering::Equal));
        Ok(keyed.into_iter().map(|(_, v)| v).collect())
    }

    /// [`Cx::sort_items`] for a key with exactly one output per item (`sort_by(.id)`):
    /// comparing `[a]` with `[b]` is comparing `a` with `b`, so the keys are compared where
    /// they are, borrowed from the items, and items already in order are returned as they are.
    fn sort_items_by_one(&self, key: &Node, items: Vec<Value>) -> R<Vec<Value>> {
        let order = {
            let keys = items
                .iter()
                .map(|item| self.one(key, item))
                .collect::<R<Vec<_>>>()?;
            if !keys.iter().all(|k| orderable(k)) {
                return Err(Fallback);
            }
            let by = |a: &Value, b: &Value| jq_cmp(a, b).unwrap_or(Ordering::Equal);
            if keys
                .windows(2)
                .all(|w| by(&w[0], &w[1]) != Ordering::Greater)
            {
                None
            } else {
                let mut order: Vec<usize> = (0..items.len()).collect();
                order.sort_by(|&a, &b| by(&keys[a], &keys[b]));
                Some(order)
            }
        };
        let Some(order) = order else {
            return Ok(items);
        };
        let mut slots: Vec<Option<Value>> = items.into_iter().map(Some).collect();
        Ok(order
            .into_iter()
            .map(|i| slots[i].take().unwrap_or_default())
            .collect())
    }

    /// The one output of `n` on an input the caller gives away, settled: an update changes
    /// the input in place, an `if` hands it to the branch it takes, and an object moves the
    /// values it takes whole from the input instead of copying them. Anything else is
    /// evaluated on the input as borrowed. On a fallback the input comes back unchanged, for
    /// jaq.
    ///
    /// If the input is `settled`, the parts of it the result keeps need no settling: only
    /// what is new is settled, within the depth left where it sits.
    pub(super) fn owned(&self, n: &Node, input: Value, settled: bool) -> Owned {
        let whole = |mut v: Value| {
            if settle(&mut v, MAX_DEPTH) {
                Owned::Done(v)
            } else {
                Owned::TooDeep
            }
        };
        match n {
            Node::Update(keys, op, rhs) => {
                match self.update_in_place(keys, *op, rhs, input, settled) {
                    Ok(v) if settled => Owned::Done(v),
                    Ok(v) => whole(v),
                    Err(input) => Owned::Back(input),
                }
            }
            Node::If(branches, otherwise, Arity::One) => {
                for (cond, then) in branches {
                    match self.one(cond, &input).map(|c| truthy(&c)) {
                        Ok(true) => return self.owned(then, input, settled),
                        Ok(false) => {}
                        Err(Fallback) => return Owned::Back(input),
                    }
                }
                match otherwise {
                    Some(e) => self.owned(e, input, settled),
                    None if settled => Owned::Done(input),
                    None => whole(input),
                }
            }
            Node::Obj(entries, Some(shape)) if shape.moves.contains(&true) => {
                match self.object_owned(entries, shape, input, settled) {
                    Ok(Some(v)) => Owned::Done(v),
                    Ok(None) => Owned::TooDeep,
                    Err(input) => Owned::Back(input),
                }
            }
            _ => match self.first_value(n, &input) {
                Ok(v) => whole(v),
                Err(Fallback) => Owned::Back(input),
            },
        }
    }

    /// `{k: v, …}` on an input given away: the entries that are not moved are evaluated
    /// first, on the input as it is; then the moved ones are taken out of it. Every moved path
    /// is checked before anything moves, so a fallback returns the input untouched. `None`
    /// if the result is nested too deep.
    fn object_owned(
        &self,
        entries: &[(Key, Node)],
        shape: &Shape,
        mut input: Value,
        settled: bool,
    ) -> Result<Option<Value>, Value> {
        let moving = || {
            entries
                .iter()
                .zip(&shape.moves)
                .filter_map(|(e, m)| m.then(|| moved(e)).flatten())
        };
        if moving().any(|steps| follow(&input, steps).is_err()) {
            return Err(input);
        }
        let mut m = shape.keys.clone();
        let mut ok = true;
        for ((slot, (_, v)), &moves) in m.values_mut().zip(entries).zip(&shape.moves) {
            if !moves {
                match self.one(v, &input) {
                    Ok(x) => *slot = x.into_owned(),
                    Err(Fallback) => return Err(input),
                }
                // Each new value sits one level down, in the object.
                ok = ok && (!settled || settle(slot, MAX_DEPTH - 1));
            }
        }
        for ((slot, e), &moves) in m.values_mut().zip(entries).zip(&shape.moves) {
            if moves && let Some(steps) = moved(e) {
                *slot = take_from(&mut input, steps);
                // A value moved from under a key of a settled input sits no deeper than it did;
                // the whole input (`.`) sits one level deeper.
                ok = ok && (!settled || !steps.is_empty() || settle(slot, MAX_DEPTH - 1));
            }
        }
        let mut v = Value::Object(m);
        ok = ok && (settled || settle(&mut v, MAX_DEPTH));
        Ok(ok.then_some(v))
    }

    fn update(&self, keys: &[String], op: UpdateOp, rhs: &Node, input: &Value) -> R<Value> {
        self.update_in_place(keys, op, rhs, input.clone(), false)
            .map_err(|_| Fallback)
    }

    /// `.k1.k2 op= rhs` on an input the caller gives away. Every check happens before the input
    /// is touched, so a fallback hands it back unchanged for jaq.
    ///
    /// With `settle_new`, the values the update adds are settled (at the depth where they go),
    /// so that the result of updating a settled input is settled; one nested too deep leaves
    /// the whole update to jaq, which refuses it too.
    fn update_in_place(
        &self,
        keys: &[String],
        op: UpdateOp,
        rhs: &Node,
        mut input: Value,
        settle_new: bool,
    ) -> Result<Value, Value> {
        let settled = |v: &mut Value| {
            !settle_new
                || MAX_DEPTH
                    .checked_sub(keys.len())
                    .is_some_and(|left| settle(v, left))
        };
        // `.k += [x]` onto an array: `x` is pushed where the array is, without first building a
        // one-item array to append.
        if let (UpdateOp::Math(MathOp::Add), Node::Arr(Some(item))) = (op, rhs)
            && is_single(item)
            && matches!(update_target(&input, keys), Some(Value::Array(_)))
        {
            let mut x = match self.one(item, &input) {
                Ok(x) => x.into_owned(),
                Err(Fallback) => return Err(input),
            };
            // The item sits one level below the array.
            let left = MAX_DEPTH.checked_sub(keys.len() + 1);
            if settle_new && !left.is_some_and(|left| settle(&mut x, left)) {
                return Err(input);
            }
            if let Value::Array(a) = slot_mut(&mut input, keys) {
                a.push(x);
            }
            return Ok(input);
        }
        // The right side of `=`, `+=`, `//=` sees the whole input; that of `|=` the old value.
        let given = match op {
            UpdateOp::Modify => None,
            _ => match self.one(rhs, &input) {
                Ok(v) => {
                    let mut v = v.into_owned();
                    if !settled(&mut v) {
                        return Err(input);
                    }
                    Some(v)
                }
                Err(Fallback) => return Err(input),
            },
        };
        let Some(old) = update_target(&input, keys) else {
            return Err(input);
        };
        let new = match (op, given) {
            (UpdateOp::Assign, Some(v)) => Some(v),
            (UpdateOp::Alt, Some(v)) => (!truthy(old)).then_some(v),
            (UpdateOp::Modify, _) => match self.one(rhs, old) {
                Ok(v) => {
                    let mut v = v.into_owned();
                    if !settled(&mut v) {
                        return Err(input);
                    }
                    Some(v)
                }
                Err(Fallback) => return Err(input),
            },
            (UpdateOp::Math(m), Some(v)) => {
                if !math_succeeds(m, old, &v) {
                    return Err(input);
                }
                // Numbers are computed here; other operands are combined in place below.
                match (old, &v) {
                    (Value::Number(_), Value::Number(_)) => {
                        match math(m, Cow::Borrowed(old), Cow::Owned(v)) {
                            Ok(mut n) => {
                                settled(&mut n);
                                Some(n)
                            }
                            Err(Fallback) => return Err(input),
                        }
                    }
                    _ => {
                        let slot = slot_mut(&mut input, keys);
                        let old = std::mem::take(slot);
                        // Cannot fail: `math_succeeds` checked the operand types.
                        *slot = math(m, Cow::Owned(old), Cow::Owned(v)).unwrap_or_default();
                        return Ok(input);
                    }
                }
            }
            _ => return Err(input),
        };
        if let Some(new) = new {
            *slot_mut(&mut input, keys) = new;
        }
        Ok(input)
    }
}

/// The value an update of `keys` changes (null for a missing last key), or `None` if jaq must
/// answer: jaq updates only through objects (through null it fails, where jq would create the
/// object).
fn update_target<'v>(mut v: &'v Value, keys: &[String]) -> Option<&'v Value> {
    for (i, k) in keys.iter().enumerate() {
        let Value::Object(m) = v else { return None };
        v = match field(m, k) {
            Some(x) => x,
            None if i + 1 == keys.len() => &NULL,
            None => return None,
        };
    }
    Some(v)
}

/// The value at `keys`, inserted as null if the last key is missing. The caller has checked
/// that every container on the way is an object.
pub(super) fn slot_mut<'v>(mut v: &'v mut Value, keys: &[String]) -> &'v mut Value {
    for k in keys {
        if !v.is_object() {
            *v = Value::Object(Map::new());
        }
        let Value::Object(m) = v else {
            unreachable!("made an object just above")
        };
        // Most updates change a key that is there: find it without copying the key.
        v = if field(m, k).is_some() {
            field_mut(m, k).unwrap_or_else(|| unreachable!("the key is there"))
        } else {
            m.entry(k.clone()).or_insert(Value::Null)
        };
    }
    v
}

/// True if `l op r` succeeds for non-numbers (numbers are checked by computing them).
pub(super) fn math_succeeds(op: MathOp, l: &Value, r: &Value) -> bool {
    matches!(
        (op, l, r),
        (_, Value::Number(_), Value::Number(_))
            | (MathOp::Add, Value::Null, _)
            | (MathOp::Add, _, Value::Null)
            | (MathOp::Add, Value::String(_), Value::String(_))
            | (MathOp::Add, Value::Array(_), Value::Array(_))
            | (MathOp::Add, Value::Object(_), Value::Object(_))
    )
}

/// Follows single steps (keys and indices, see [`walk`] for the rules) from `v`.
pub(super) fn follow<'v>(mut v: &'v Value, steps: &[(Step, bool)]) -> R<&'v Value> {
    for (step, _) in steps {
        v = at(step, v)?;
    }
    Ok(v)
}

/// The value one key or index step reaches from `v`: a missing key or index, or any such step
/// on null, reaches null; a step that does not fit (and `.[]`, which is not one step's value)
/// is jaq's to answer.
fn at<'v>(step: &Step, v: &'v Value) -> R<&'v Value> {
    match (step, v) {
        (Step::Key(k), Value::Object(m)) => Ok(field(m, k).unwrap_or(&NULL)),
        (Step::Key(_) | Step::Index(_), Value::Null) => Ok(&NULL),
        (Step::Index(i), Value::Array(a)) => Ok(index(a, *i).unwrap_or(&NULL)),
        _ => Err(Fallback),
    }
}

/// [`follow`] on a value the caller gives away: the value reached is moved out, not copied.
pub(super) fn take_at(mut v: Value, steps: &[(Step, bool)]) -> R<Value> {
    if steps.iter().any(|(s, _)| matches!(s, Step::Iter)) {
        return Err(Fallback);
    }
    Ok(place(&mut v, steps)?.map_or(Value::Null, std::mem::take))
}

/// Where single steps (keys and indices, by [`follow`]'s rules) reach in `v`, to move the value
/// out; `None` past a missing key or index, where every further step gives null.
fn place<'v>(mut at: &'v mut Value, steps: &[(Step, bool)]) -> R<Option<&'v mut Value>> {
    for (step, _) in steps {
        let next = match (step, at) {
            (Step::Key(k), Value::Object(m)) => field_mut(m, k),
            (Step::Key(_) | Step::Index(_), Value::Null) => None,
            (Step::Index(i), Value::Array(a)) => {
                let len = a.len();
                index_of(len, *i).and_then(|i| a.get_mut(i))
            }
            _ => return Err(Fallback),
        };
        let Some(next) = next else {
            return Ok(None);
        };
        at = next;
    }
    Ok(Some(at))
}

/// The path of an object entry's value, if it is a path (`.` is the empty one).
fn moved((_, v): &(Key, Node)) -> Option<&[(Step, bool)]> {
    match v {
        Node::Path(_, steps, _) => Some(steps),
        Node::Id => Some(&[]),
        _ => None,
    }
}

/// Moves the value at a path (which [`follow`] has accepted) out of `v`, leaving null.
fn take_from(v: &mut Value, steps: &[(Step, bool)]) -> Value {
    place(v, steps)
        .ok()
        .flatten()
        .map_or(Value::Null, std::mem::take)
}

/// `.[i]` of an array, counting a negative `i` from the end.
fn index(a: &[Value], i: i64) -> Option<&Value> {
    index_of(a.len(), i).and_then(|i| a.get(i))
}

fn index_of(len: usize, i: i64) -> Option<usize> {
    let at = if i < 0 { len as i64 + i } else { i };
    usize::try_from(at).ok()
}

/// Follows `steps` from `v`, feeding every value reached to `f`.
pub(super) fn walk<'v>(
    v: &'v Value,
    steps: &[(Step, bool)],
    f: &mut dyn FnMut(&'v Value) -> R<Flow>,
) -> R<Flow> {
    // A step that does not fit the value is an error, or nothing under `?`. jaq's rules for
    // which steps fit differ from jq's in places (`.[0]` on an object is null in jaq), so a
    // misfit is always jaq's to answer; `?` matters here only for the steps that fit.
    let Some(((step, _optional), rest)) = steps.split_first() else {
        return f(v);
    };
    match (step, v) {
        (Step::Iter, Value::Array(a)) => {
            for x in a {
                if walk(x, rest, f)? == Flow::Stop {
                    return Ok(Flow::Stop);
                }
            }
            Ok(Flow::More)
        }
        (Step::Iter, Value::Object(m)) => {
            for x in m.values() {
                if walk(x, rest, f)? == Flow::Stop {
                    return Ok(Flow::Stop);
                }
            }
            Ok(Flow::More)
        }
        _ => walk(at(step, v)?, rest, f),
    }
}
