//! The AST walk behind [`analyze`](super::analyze): scopes of visible relations per `SELECT`,
//! CTE names, and the classification of predicates.

use sqlparser::ast::{
    BinaryOperator, Expr, FromTable, FunctionArg, FunctionArgExpr, FunctionArguments, GroupByExpr,
    Ident, JoinConstraint, JoinOperator, LimitClause, ObjectName, OrderBy, OrderByKind,
    OrderBySort, Query, Select, SelectItem, SetExpr, Statement, TableFactor, TableObject,
    TableWithJoins, UpdateTableFromKind, Value,
};

use super::{
    ColumnRef, Filter, FilterOp, JoinPair, Limit, SortKey, SqlAnalysis, TableName, TableRef,
};
use crate::fingerprint::StatementKind;

/// Nesting depth beyond which the walk stops descending (sqlparser already bounds recursion,
/// this keeps the walk itself bounded too).
const MAX_DEPTH: usize = 64;

/// What a visible name in a `FROM` list stands for.
#[derive(Debug, Clone)]
enum Source {
    Base(TableName),
    Derived,
}

/// A resolved column with where it came from.
#[derive(Debug, Clone)]
struct Resolved {
    column: ColumnRef,
    /// Index of the scope frame the relation was found in.
    frame: usize,
    /// Visible name of the relation inside its frame (empty when unknown).
    source: String,
}

#[derive(Debug, Default)]
struct Walker {
    out: SqlAnalysis,
    /// One frame per `SELECT` being walked: (visible name, source).
    frames: Vec<Vec<(String, Source)>>,
    /// CTE names visible at each nesting level.
    ctes: Vec<Vec<String>>,
    depth: usize,
    /// Treat `col::type` as `col` (for conditions PostgreSQL prints in plans, where the casts
    /// are implicit ones an index on the column still serves).
    unwrap_casts: bool,
}

pub(super) fn analyze_statement(statement: &Statement) -> SqlAnalysis {
    analyze_with(statement, false)
}

pub(super) fn analyze_with(statement: &Statement, unwrap_casts: bool) -> SqlAnalysis {
    let mut w = Walker {
        unwrap_casts,
        ..Walker::default()
    };
    w.statement(statement, true);
    let mut out = w.out;
    out.columns.sort();
    out.columns.dedup();
    out.group_by.dedup();
    out.written.dedup();
    out
}

/// Folds an identifier like PostgreSQL: unquoted names to lower case.
fn fold(ident: &Ident) -> String {
    if ident.quote_style.is_some() {
        ident.value.clone()
    } else {
        ident.value.to_lowercase()
    }
}

fn table_name(name: &ObjectName) -> Option<TableName> {
    let parts: Vec<String> = name
        .0
        .iter()
        .map(|p| p.as_ident().map(fold))
        .collect::<Option<Vec<_>>>()?;
    match parts.as_slice() {
        [t] => Some(TableName::new(t.clone())),
        [.., s, t] => Some(TableName::qualified(s.clone(), t.clone())),
        [] => None,
    }
}

/// The literal SQL text of a constant expression, when it is one.
fn constant_text(expr: &Expr) -> Option<String> {
    match expr {
        Expr::Value(v) => match &v.value {
            Value::Placeholder(_) => None,
            other => Some(other.to_string()),
        },
        Expr::Nested(e) => constant_text(e),
        Expr::UnaryOp { .. } | Expr::TypedString(_) => Some(expr.to_string()),
        Expr::Cast { expr: inner, .. } => constant_text(inner).map(|_| expr.to_string()),
        _ => None,
    }
}

fn is_comparison(op: &BinaryOperator) -> Option<FilterOp> {
    Some(match op {
        BinaryOperator::Eq => FilterOp::Equality,
        BinaryOperator::Lt | BinaryOperator::LtEq | BinaryOperator::Gt | BinaryOperator::GtEq => {
            FilterOp::Range
        }
        BinaryOperator::NotEq => FilterOp::Other,
        _ => return None,
    })
}

impl Walker {
    fn statement(&mut self, statement: &Statement, top: bool) {
        if self.depth > MAX_DEPTH {
            return;
        }
        self.depth += 1;
        match statement {
            Statement::Query(q) => {
                if top {
                    self.out.kind.get_or_insert(StatementKind::Select);
                }
                self.query(q, top);
            }
            Statement::Insert(insert) => {
                if top || self.out.kind == Some(StatementKind::Select) {
                    self.out.kind = Some(StatementKind::Insert);
                }
                if let TableObject::TableName(name) = &insert.table {
                    if let Some(t) = table_name(name) {
                        self.add_table(t.clone(), None);
                        self.out.written.push(t);
                    }
                }
                if let Some(source) = &insert.source {
                    self.query(source, false);
                }
            }
            Statement::Update(update) => {
                if top || self.out.kind == Some(StatementKind::Select) {
                    self.out.kind = Some(StatementKind::Update);
                }
                self.frames.push(Vec::new());
                let first = self.frames.len() - 1;
                self.table_with_joins(&update.table);
                if let Some(Source::Base(t)) = self.frames[first].first().map(|s| s.1.clone()) {
                    self.out.written.push(t);
                }
                if let Some(
                    UpdateTableFromKind::BeforeSet(from) | UpdateTableFromKind::AfterSet(from),
                ) = &update.from
                {
                    for twj in from {
                        self.table_with_joins(twj);
                    }
                }
                for a in &update.assignments {
                    self.expr_columns(&a.value);
                }
                if let Some(sel) = &update.selection {
                    self.predicate(sel, false);
                }
                self.frames.pop();
            }
            Statement::Delete(delete) => {
                if top || self.out.kind == Some(StatementKind::Select) {
                    self.out.kind = Some(StatementKind::Delete);
                }
                self.frames.push(Vec::new());
                let first = self.frames.len() - 1;
                let (FromTable::WithFromKeyword(from) | FromTable::WithoutKeyword(from)) =
                    &delete.from;
                for twj in from {
                    self.table_with_joins(twj);
                }
                for (_, source) in self.frames[first].clone() {
                    if let Source::Base(t) = source {
                        self.out.written.push(t);
                    }
                }
                if let Some(using) = &delete.using {
                    for twj in using {
                        self.table_with_joins(twj);
                    }
                }
                if let Some(sel) = &delete.selection {
                    self.predicate(sel, false);
                }
                self.frames.pop();
            }
            Statement::Merge(_) => {
                if top {
                    self.out.kind = Some(StatementKind::Merge);
                }
            }
            _ => {
                if top {
                    self.out.kind = Some(StatementKind::Other);
                }
            }
        }
        self.depth -= 1;
    }

    fn query(&mut self, q: &Query, top: bool) {
        if self.depth > MAX_DEPTH {
            return;
        }
        self.depth += 1;
        let mut pushed_ctes = false;
        if let Some(with) = &q.with {
            self.ctes.push(
                with.cte_tables
                    .iter()
                    .map(|c| fold(&c.alias.name))
                    .collect(),
            );
            pushed_ctes = true;
            for cte in &with.cte_tables {
                self.query(&cte.query, false);
            }
        }
        self.set_expr(&q.body, q.order_by.as_ref(), top);
        if top {
            self.out.limit = match &q.limit_clause {
                Some(LimitClause::LimitOffset { limit: Some(e), .. })
                | Some(LimitClause::OffsetCommaLimit { limit: e, .. }) => Some(limit_of(e)),
                _ => q
                    .fetch
                    .as_ref()
                    .map(|f| f.quantity.as_ref().map_or(Limit::Rows(1), limit_of)),
            };
        }
        if pushed_ctes {
            self.ctes.pop();
        }
        self.depth -= 1;
    }

    fn set_expr(&mut self, body: &SetExpr, order_by: Option<&OrderBy>, top: bool) {
        match body {
            SetExpr::Select(select) => self.select(select, order_by, top),
            SetExpr::Query(q) => self.query(q, false),
            SetExpr::SetOperation { left, right, .. } => {
                self.set_expr(left, None, false);
                self.set_expr(right, None, false);
            }
            SetExpr::Values(values) => {
                for row in &values.rows {
                    for e in &row.content {
                        self.expr_columns(e);
                    }
                }
            }
            SetExpr::Insert(st)
            | SetExpr::Update(st)
            | SetExpr::Delete(st)
            | SetExpr::Merge(st) => self.statement(st, false),
            SetExpr::Table(_) => {}
        }
    }

    fn select(&mut self, select: &Select, order_by: Option<&OrderBy>, top: bool) {
        self.frames.push(Vec::new());
        for twj in &select.from {
            self.table_with_joins(twj);
        }
        let mut aliases = Vec::new();
        for item in &select.projection {
            match item {
                SelectItem::UnnamedExpr(e) => self.expr_columns(e),
                SelectItem::ExprWithAlias { expr, alias } => {
                    aliases.push(fold(alias));
                    self.expr_columns(expr);
                }
                SelectItem::ExprWithAliases { expr, aliases: a } => {
                    aliases.extend(a.iter().map(fold));
                    self.expr_columns(expr);
                }
                // `*` / `t.*`: no index can cover the projection.
                _ => self.out.star = true,
            }
        }
        if let Some(sel) = &select.selection {
            self.predicate(sel, false);
        }
        if let GroupByExpr::Expressions(exprs, _) = &select.group_by {
            for e in exprs {
                if let Some(r) = self.column_of(e) {
                    self.out.group_by.push(r.column.clone());
                    self.out.columns.push(r.column);
                } else {
                    self.expr_columns(e);
                }
            }
        }
        if let Some(h) = &select.having {
            self.expr_columns(h);
        }
        if let Some(OrderBy {
            kind: OrderByKind::Expressions(keys),
            ..
        }) = order_by
        {
            for key in keys {
                let is_alias =
                    matches!(&key.expr, Expr::Identifier(i) if aliases.contains(&fold(i)));
                match self.column_of(&key.expr) {
                    Some(r) if !is_alias => {
                        self.out.columns.push(r.column.clone());
                        let target = if top {
                            &mut self.out.order_by
                        } else {
                            &mut self.out.nested_order_by
                        };
                        {
                            target.push(SortKey {
                                column: r.column,
                                descending: matches!(key.options.sort, Some(OrderBySort::Desc)),
                                nulls_first: key.options.nulls_first,
                            });
                        }
                    }
                    _ => self.expr_columns(&key.expr),
                }
            }
        }
        self.frames.pop();
    }

    fn table_with_joins(&mut self, twj: &TableWithJoins) {
        let before = self.frames.last().map_or(0, Vec::len);
        self.table_factor(&twj.relation);
        for join in &twj.joins {
            let left_names: Vec<String> = self
                .frames
                .last()
                .map(|f| f[before..].iter().map(|(n, _)| n.clone()).collect())
                .unwrap_or_default();
            let start = self.frames.last().map_or(0, Vec::len);
            self.table_factor(&join.relation);
            let constraint = match &join.join_operator {
                JoinOperator::Join(c)
                | JoinOperator::Inner(c)
                | JoinOperator::Left(c)
                | JoinOperator::LeftOuter(c)
                | JoinOperator::Right(c)
                | JoinOperator::RightOuter(c)
                | JoinOperator::FullOuter(c)
                | JoinOperator::CrossJoin(c)
                | JoinOperator::Semi(c)
                | JoinOperator::LeftSemi(c)
                | JoinOperator::RightSemi(c)
                | JoinOperator::Anti(c)
                | JoinOperator::LeftAnti(c)
                | JoinOperator::RightAnti(c) => Some(c),
                _ => None,
            };
            match constraint {
                Some(JoinConstraint::On(e)) => self.predicate(e, false),
                Some(JoinConstraint::Using(cols)) => {
                    let right_name = self
                        .frames
                        .last()
                        .and_then(|f| f.get(start))
                        .map(|(n, _)| n.clone());
                    for col in cols {
                        let Some(ident) = col.0.last().and_then(|p| p.as_ident()) else {
                            continue;
                        };
                        let column = fold(ident);
                        // With one relation on the left the column is its; with several,
                        // PostgreSQL picks the one that has it, which only the catalog knows.
                        let left = match left_names.as_slice() {
                            [only] => self.qualified(only, &column),
                            _ => Some(Resolved {
                                column: ColumnRef {
                                    table: None,
                                    column: column.clone(),
                                },
                                frame: self.frames.len().saturating_sub(1),
                                source: String::new(),
                            }),
                        };
                        let (Some(left), Some(right)) = (
                            left,
                            right_name.as_ref().and_then(|n| self.qualified(n, &column)),
                        ) else {
                            continue;
                        };
                        self.out.columns.push(left.column.clone());
                        self.out.columns.push(right.column.clone());
                        self.out.joins.push(JoinPair {
                            left: left.column,
                            right: right.column,
                            correlated: false,
                        });
                    }
                }
                _ => {}
            }
        }
    }

    fn add_table(&mut self, table: TableName, alias: Option<String>) {
        let r = TableRef { table, alias };
        if !self.out.tables.contains(&r) {
            self.out.tables.push(r);
        }
    }

    fn is_cte(&self, name: &ObjectName) -> bool {
        if name.0.len() != 1 {
            return false;
        }
        let Some(ident) = name.0[0].as_ident() else {
            return false;
        };
        let n = fold(ident);
        self.ctes.iter().any(|frame| frame.contains(&n))
    }

    fn push_source(&mut self, name: String, source: Source) {
        if let Some(frame) = self.frames.last_mut() {
            frame.push((name, source));
        }
    }

    fn table_factor(&mut self, factor: &TableFactor) {
        match factor {
            TableFactor::Table {
                name, alias, args, ..
            } => {
                let alias_name = alias.as_ref().map(|a| fold(&a.name));
                if args.is_some() || self.is_cte(name) {
                    let visible = alias_name
                        .or_else(|| name.0.last().and_then(|p| p.as_ident()).map(fold))
                        .unwrap_or_default();
                    self.push_source(visible, Source::Derived);
                    return;
                }
                if let Some(t) = table_name(name) {
                    let visible = alias_name.clone().unwrap_or_else(|| t.name.clone());
                    self.add_table(t.clone(), alias_name);
                    self.push_source(visible, Source::Base(t));
                }
            }
            TableFactor::Derived {
                subquery, alias, ..
            } => {
                // A LATERAL subquery sees the frames walked so far; a plain one only would if
                // the SQL were invalid, so walking both the same way is sound.
                self.query(subquery, false);
                let visible = alias.as_ref().map(|a| fold(&a.name)).unwrap_or_default();
                self.push_source(visible, Source::Derived);
            }
            TableFactor::NestedJoin {
                table_with_joins, ..
            } => self.table_with_joins(table_with_joins),
            TableFactor::Function { alias, args, .. } => {
                for a in args {
                    self.function_arg(a);
                }
                let visible = alias.as_ref().map(|a| fold(&a.name)).unwrap_or_default();
                self.push_source(visible, Source::Derived);
            }
            TableFactor::UNNEST {
                alias, array_exprs, ..
            } => {
                for e in array_exprs {
                    self.expr_columns(e);
                }
                let visible = alias.as_ref().map(|a| fold(&a.name)).unwrap_or_default();
                self.push_source(visible, Source::Derived);
            }
            TableFactor::TableFunction { expr, alias } => {
                self.expr_columns(expr);
                let visible = alias.as_ref().map(|a| fold(&a.name)).unwrap_or_default();
                self.push_source(visible, Source::Derived);
            }
            _ => {}
        }
    }

    /// Resolves `relation.column` by the relation's visible name, innermost frame first.
    fn qualified(&self, relation: &str, column: &str) -> Option<Resolved> {
        for (idx, frame) in self.frames.iter().enumerate().rev() {
            for (name, source) in frame {
                if name == relation {
                    return match source {
                        Source::Base(t) => Some(Resolved {
                            column: ColumnRef {
                                table: Some(t.clone()),
                                column: column.to_string(),
                            },
                            frame: idx,
                            source: name.clone(),
                        }),
                        Source::Derived => None,
                    };
                }
            }
        }
        None
    }

    /// Resolves a column expression (identifier or compound identifier), unwrapping parentheses.
    fn column_of(&self, expr: &Expr) -> Option<Resolved> {
        match expr {
            Expr::Nested(e) => self.column_of(e),
            Expr::Cast { expr: e, .. } if self.unwrap_casts => self.column_of(e),
            Expr::Identifier(ident) => {
                let column = fold(ident);
                let frame_idx = self.frames.len().checked_sub(1)?;
                let frame = &self.frames[frame_idx];
                match frame.as_slice() {
                    [(name, Source::Base(t))] => Some(Resolved {
                        column: ColumnRef {
                            table: Some(t.clone()),
                            column,
                        },
                        frame: frame_idx,
                        source: name.clone(),
                    }),
                    [(_, Source::Derived)] => None,
                    _ => Some(Resolved {
                        column: ColumnRef {
                            table: None,
                            column,
                        },
                        frame: frame_idx,
                        source: String::new(),
                    }),
                }
            }
            Expr::CompoundIdentifier(parts) => match parts.as_slice() {
                [rel, col] => self.qualified(&fold(rel), &fold(col)),
                [schema, rel, col] => {
                    let r = self.qualified(&fold(rel), &fold(col))?;
                    let schema = fold(schema);
                    let matches = r
                        .column
                        .table
                        .as_ref()
                        .is_some_and(|t| t.schema.as_deref().is_none_or(|s| s == schema));
                    matches.then_some(r)
                }
                _ => None,
            },
            _ => None,
        }
    }

    /// True when `expr` references no column of the innermost frame (a constant, a parameter,
    /// or an outer reference).
    fn is_value_side(&self, expr: &Expr) -> bool {
        let mut found = false;
        self.scan_columns(expr, &mut |w, e| {
            if let Some(r) = w.column_of(e) {
                if r.frame + 1 == w.frames.len() {
                    found = true;
                }
            }
        });
        !found
    }

    fn push_filter(&mut self, r: Resolved, op: FilterOp, in_or: bool, constant: Option<String>) {
        self.out.columns.push(r.column.clone());
        self.out.filters.push(Filter {
            column: r.column,
            op,
            in_disjunction: in_or,
            constant,
        });
    }

    /// Classifies a predicate, splitting `AND`s; `in_or` is true under an `OR`.
    fn predicate(&mut self, expr: &Expr, in_or: bool) {
        match expr {
            Expr::BinaryOp {
                left,
                op: BinaryOperator::And,
                right,
            } => {
                self.predicate(left, in_or);
                self.predicate(right, in_or);
            }
            Expr::BinaryOp {
                left,
                op: BinaryOperator::Or,
                right,
            } => {
                self.predicate(left, true);
                self.predicate(right, true);
            }
            Expr::Nested(e) => self.predicate(e, in_or),
            Expr::BinaryOp { left, op, right } if is_comparison(op).is_some() => {
                let class = is_comparison(op).unwrap_or(FilterOp::Other);
                let (l, r) = (self.column_of(left), self.column_of(right));
                match (l, r) {
                    (Some(a), Some(b))
                        if !(a.frame == b.frame && a.source == b.source)
                            && class == FilterOp::Equality =>
                    {
                        self.out.columns.push(a.column.clone());
                        self.out.columns.push(b.column.clone());
                        let correlated = a.frame != b.frame;
                        // The innermost side is the one an index would serve.
                        let (left, right) = if b.frame > a.frame { (b, a) } else { (a, b) };
                        self.out.joins.push(JoinPair {
                            left: left.column,
                            right: right.column,
                            correlated,
                        });
                    }
                    (Some(a), Some(b)) if !(a.frame == b.frame && a.source == b.source) => {
                        let _ = (a, b);
                        self.expr_columns(left);
                        self.expr_columns(right);
                    }
                    (Some(a), _)
                        if self.is_value_side(right) && a.frame + 1 == self.frames.len() =>
                    {
                        self.expr_columns(right);
                        self.push_filter(a, class, in_or, constant_text(right));
                    }
                    (_, Some(b))
                        if self.is_value_side(left) && b.frame + 1 == self.frames.len() =>
                    {
                        self.expr_columns(left);
                        let class = match op {
                            BinaryOperator::Eq | BinaryOperator::NotEq => class,
                            _ => FilterOp::Range,
                        };
                        self.push_filter(b, class, in_or, constant_text(left));
                    }
                    _ => {
                        self.expr_columns(left);
                        self.expr_columns(right);
                    }
                }
            }
            Expr::Between {
                expr: e,
                negated,
                low,
                high,
            } => {
                self.expr_columns(low);
                self.expr_columns(high);
                match self.column_of(e) {
                    Some(r) if !negated => self.push_filter(r, FilterOp::Range, in_or, None),
                    _ => self.expr_columns(e),
                }
            }
            Expr::InList {
                expr: e,
                list,
                negated,
            } => {
                for item in list {
                    self.expr_columns(item);
                }
                match self.column_of(e) {
                    Some(r) if !negated => {
                        let (op, constant) = if list.len() == 1 {
                            (FilterOp::Equality, constant_text(&list[0]))
                        } else {
                            (FilterOp::In, None)
                        };
                        self.push_filter(r, op, in_or, constant)
                    }
                    _ => self.expr_columns(e),
                }
            }
            Expr::InSubquery {
                expr: e,
                subquery,
                negated,
            } => {
                self.query(subquery, false);
                match self.column_of(e) {
                    Some(r) if !negated => self.push_filter(r, FilterOp::In, in_or, None),
                    _ => self.expr_columns(e),
                }
            }
            Expr::AnyOp {
                left,
                compare_op,
                right,
                ..
            } => {
                self.expr_columns(right);
                match (self.column_of(left), compare_op) {
                    (Some(r), BinaryOperator::Eq) => self.push_filter(r, FilterOp::In, in_or, None),
                    (Some(r), _) => self.push_filter(r, FilterOp::Other, in_or, None),
                    _ => self.expr_columns(left),
                }
            }
            Expr::Like {
                negated,
                any,
                expr: e,
                pattern,
                ..
            } => {
                let prefix = matches!(&**pattern, Expr::Value(v)
                    if matches!(&v.value, Value::SingleQuotedString(s)
                        if !s.is_empty() && !s.starts_with('%') && !s.starts_with('_')));
                let op = if prefix && !negated && !any {
                    FilterOp::LikePrefix
                } else {
                    FilterOp::Other
                };
                match self.column_of(e) {
                    Some(r) => self.push_filter(r, op, in_or, None),
                    None => self.expr_columns(e),
                }
            }
            Expr::IsNull(e) | Expr::IsNotNull(e) => {
                let op = if matches!(expr, Expr::IsNull(_)) {
                    FilterOp::IsNull
                } else {
                    FilterOp::IsNotNull
                };
                match self.column_of(e) {
                    Some(r) => self.push_filter(r, op, in_or, Some("NULL".to_string())),
                    None => self.expr_columns(e),
                }
            }
            Expr::Identifier(_) | Expr::CompoundIdentifier(_) => {
                // A bare boolean column: `WHERE active`.
                if let Some(r) = self.column_of(expr) {
                    self.push_filter(r, FilterOp::Equality, in_or, Some("true".into()));
                }
            }
            other => self.expr_columns(other),
        }
    }

    /// Records every column `expr` references and walks its subqueries.
    fn expr_columns(&mut self, expr: &Expr) {
        let mut cols = Vec::new();
        let mut subqueries: Vec<Query> = Vec::new();
        self.scan(
            expr,
            &mut |w, e| {
                if let Some(r) = w.column_of(e) {
                    cols.push(r.column);
                }
            },
            &mut subqueries,
        );
        self.out.columns.extend(cols);
        for q in &subqueries {
            self.query(q, false);
        }
    }

    fn function_arg(&mut self, arg: &FunctionArg) {
        let (FunctionArg::Named { arg, .. }
        | FunctionArg::ExprNamed { arg, .. }
        | FunctionArg::Unnamed(arg)) = arg;
        if let FunctionArgExpr::Expr(e) = arg {
            self.expr_columns(e);
        }
    }

    /// Calls `f` on every column-like node of `expr` (not descending into subqueries).
    fn scan_columns(&self, expr: &Expr, f: &mut dyn FnMut(&Self, &Expr)) {
        let mut ignored = Vec::new();
        self.scan(expr, f, &mut ignored);
    }

    /// Walks the expression tree: column-like nodes go to `f`, subqueries are collected (cloned,
    /// so the caller can walk them with `&mut self`).
    fn scan(&self, expr: &Expr, f: &mut dyn FnMut(&Self, &Expr), subqueries: &mut Vec<Query>) {
        let go = |e: &Expr, f: &mut dyn FnMut(&Self, &Expr), s: &mut Vec<Query>| self.scan(e, f, s);
        match expr {
            Expr::Identifier(_) | Expr::CompoundIdentifier(_) => f(self, expr),
            Expr::Nested(e)
            | Expr::UnaryOp { expr: e, .. }
            | Expr::Cast { expr: e, .. }
            | Expr::Collate { expr: e, .. }
            | Expr::Extract { expr: e, .. }
            | Expr::Ceil { expr: e, .. }
            | Expr::Floor { expr: e, .. }
            | Expr::IsNull(e)
            | Expr::IsNotNull(e)
            | Expr::IsTrue(e)
            | Expr::IsFalse(e)
            | Expr::IsNotTrue(e)
            | Expr::IsNotFalse(e)
            | Expr::IsUnknown(e)
            | Expr::IsNotUnknown(e) => go(e, f, subqueries),
            Expr::BinaryOp { left, right, .. }
            | Expr::AnyOp { left, right, .. }
            | Expr::AllOp { left, right, .. }
            | Expr::IsDistinctFrom(left, right)
            | Expr::IsNotDistinctFrom(left, right) => {
                go(left, f, subqueries);
                go(right, f, subqueries);
            }
            Expr::AtTimeZone {
                timestamp,
                time_zone,
            } => {
                go(timestamp, f, subqueries);
                go(time_zone, f, subqueries);
            }
            Expr::Like { expr, pattern, .. }
            | Expr::ILike { expr, pattern, .. }
            | Expr::SimilarTo { expr, pattern, .. }
            | Expr::RLike { expr, pattern, .. } => {
                go(expr, f, subqueries);
                go(pattern, f, subqueries);
            }
            Expr::Between {
                expr, low, high, ..
            } => {
                go(expr, f, subqueries);
                go(low, f, subqueries);
                go(high, f, subqueries);
            }
            Expr::InList { expr, list, .. } => {
                go(expr, f, subqueries);
                for e in list {
                    go(e, f, subqueries);
                }
            }
            Expr::InSubquery { expr, subquery, .. } => {
                go(expr, f, subqueries);
                subqueries.push((**subquery).clone());
            }
            Expr::Exists { subquery, .. } | Expr::Subquery(subquery) => {
                subqueries.push((**subquery).clone())
            }
            Expr::Tuple(list) => {
                for e in list {
                    go(e, f, subqueries);
                }
            }
            Expr::Array(arr) => {
                for e in &arr.elem {
                    go(e, f, subqueries);
                }
            }
            Expr::Substring {
                expr,
                substring_from,
                substring_for,
                ..
            } => {
                go(expr, f, subqueries);
                for e in [substring_from, substring_for].into_iter().flatten() {
                    go(e, f, subqueries);
                }
            }
            Expr::Trim { expr, .. } | Expr::Position { expr, .. } => go(expr, f, subqueries),
            Expr::Case {
                operand,
                conditions,
                else_result,
                ..
            } => {
                if let Some(e) = operand {
                    go(e, f, subqueries);
                }
                for c in conditions {
                    go(&c.condition, f, subqueries);
                    go(&c.result, f, subqueries);
                }
                if let Some(e) = else_result {
                    go(e, f, subqueries);
                }
            }
            Expr::Function(func) => match &func.args {
                FunctionArguments::List(list) => {
                    for a in &list.args {
                        let (FunctionArg::Named { arg, .. }
                        | FunctionArg::ExprNamed { arg, .. }
                        | FunctionArg::Unnamed(arg)) = a;
                        if let FunctionArgExpr::Expr(e) = arg {
                            go(e, f, subqueries);
                        }
                    }
                }
                FunctionArguments::Subquery(q) => subqueries.push((**q).clone()),
                FunctionArguments::None => {}
            },
            _ => {}
        }
    }
}

fn limit_of(e: &Expr) -> Limit {
    match e {
        Expr::Value(v) => match &v.value {
            Value::Number(n, _) => n.parse().map(Limit::Rows).unwrap_or(Limit::Parameter),
            _ => Limit::Parameter,
        },
        _ => Limit::Parameter,
    }
}
