//! Convenience calls for the common item operations.

use std::collections::HashMap;
use std::fmt;

use aws_sdk_dynamodb::operation::delete_item::{DeleteItemError, DeleteItemOutput};
use aws_sdk_dynamodb::operation::get_item::GetItemError;
use aws_sdk_dynamodb::operation::put_item::{PutItemError, PutItemOutput};
use aws_sdk_dynamodb::operation::query::{QueryError, QueryOutput};
use aws_sdk_dynamodb::operation::update_item::{UpdateItemError, UpdateItemOutput};
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue};

use super::call::{Access, Call};
use super::error::Error;
use super::table::Table;

/// An item or a key: attribute names to values.
pub type Item = HashMap<String, AttributeValue>;

/// Expression parts shared by the calls: condition, `#name` and `:value` placeholders.
#[derive(Clone, Debug, Default)]
struct Expr {
    condition: Option<String>,
    names: HashMap<String, String>,
    values: Item,
}

impl Expr {
    fn names(&self) -> Option<HashMap<String, String>> {
        (!self.names.is_empty()).then(|| self.names.clone())
    }

    fn values(&self) -> Option<Item> {
        (!self.values.is_empty()).then(|| self.values.clone())
    }

    /// Where a write with this expression goes: a conditional write always to the active
    /// region, any other by the table's write mode.
    fn write_access(&self) -> Access {
        if self.condition.is_some() {
            Access::Active
        } else {
            Access::Write
        }
    }
}

macro_rules! expr_setters {
    () => {
        /// Binds the placeholder `#name` (with its `#`) to the attribute name `attribute`.
        pub fn name(
            mut self,
            placeholder: impl Into<String>,
            attribute: impl Into<String>,
        ) -> Self {
            self.expr.names.insert(placeholder.into(), attribute.into());
            self
        }

        /// Binds the placeholder `:value` (with its `:`) to `value`.
        pub fn value(mut self, placeholder: impl Into<String>, value: AttributeValue) -> Self {
            self.expr.values.insert(placeholder.into(), value);
            self
        }
    };
}

macro_rules! condition_setter {
    () => {
        /// A condition expression (e.g. `"attribute_not_exists(pk)"`): the write happens only
        /// if it holds, and always in the active region.
        pub fn condition(mut self, expression: impl Into<String>) -> Self {
            self.expr.condition = Some(expression.into());
            self
        }
    };
}

macro_rules! debug_without_values {
    ($t:ident, $($field:ident),*) => {
        impl fmt::Debug for $t<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_struct(stringify!($t))
                    .field("table", &self.table.name())
                    $(.field(stringify!($field), &self.$field))*
                    .field("condition", &self.expr.condition)
                    .finish_non_exhaustive()
            }
        }
    };
}

impl Table {
    /// `GetItem` of `key`: eventually consistent from the read policy's region (any healthy
    /// region after a failure), or, with [`consistent_read`](GetItem::consistent_read), from
    /// the active region. Returns the item, `None` when there is none.
    ///
    /// ```no_run
    /// # async fn demo(table: switchover::dynamo::Table) -> Result<(), Box<dyn std::error::Error>> {
    /// use aws_sdk_dynamodb::types::AttributeValue;
    ///
    /// let key = [("pk".to_owned(), AttributeValue::S("user-1".into()))].into();
    /// if let Some(item) = table.get_item(key).consistent_read(true).send().await? {
    ///     println!("{item:?}");
    /// }
    /// # Ok(()) }
    /// ```
    pub fn get_item(&self, key: Item) -> GetItem<'_> {
        GetItem {
            table: self,
            key,
            consistent: false,
            projection: None,
            expr: Expr::default(),
        }
    }

    /// `PutItem` of a whole `item`, routed as a write. Idempotent unless a
    /// [`condition`](PutItem::condition) is set (a conditional put goes to the active region
    /// and is not retried once it may have executed: its second run would fail its own
    /// condition).
    pub fn put_item(&self, item: Item) -> PutItem<'_> {
        PutItem {
            table: self,
            item,
            idempotent: None,
            expr: Expr::default(),
        }
    }

    /// `UpdateItem` of `key` with `update_expression` (e.g. `"SET #n = :v"`), routed as a
    /// write. **Not** idempotent by default (`ADD`, counters); mark an update that only `SET`s
    /// values with [`idempotent`](UpdateItem::idempotent). Returns the new item's attributes
    /// (`ALL_NEW`).
    pub fn update_item(&self, key: Item, update_expression: impl Into<String>) -> UpdateItem<'_> {
        UpdateItem {
            table: self,
            key,
            update: update_expression.into(),
            idempotent: None,
            expr: Expr::default(),
        }
    }

    /// `DeleteItem` of `key`, routed as a write; idempotent unless a condition is set.
    pub fn delete_item(&self, key: Item) -> DeleteItem<'_> {
        DeleteItem {
            table: self,
            key,
            idempotent: None,
            expr: Expr::default(),
        }
    }

    /// `Query` with `key_condition` (e.g. `"pk = :pk"`), one page, routed as a read (or to the
    /// active region with [`consistent_read`](Query::consistent_read)).
    pub fn query(&self, key_condition: impl Into<String>) -> Query<'_> {
        Query {
            table: self,
            key_condition: key_condition.into(),
            index: None,
            filter: None,
            limit: None,
            consistent: false,
            start_key: None,
            expr: Expr::default(),
        }
    }
}

/// A `GetItem` through a [`Table`]; see [`Table::get_item`].
#[must_use = "a call does nothing until `send` is awaited"]
pub struct GetItem<'t> {
    table: &'t Table,
    key: Item,
    consistent: bool,
    projection: Option<String>,
    expr: Expr,
}
debug_without_values!(GetItem, consistent, projection);

impl GetItem<'_> {
    expr_setters!();

    /// A strongly consistent read (default `false`): always from the active region.
    pub fn consistent_read(mut self, yes: bool) -> Self {
        self.consistent = yes;
        self
    }

    /// Returns only these attributes.
    pub fn projection(mut self, expression: impl Into<String>) -> Self {
        self.projection = Some(expression.into());
        self
    }

    /// Runs the call.
    ///
    /// # Errors
    ///
    /// See [`Error`].
    pub async fn send(self) -> Result<Option<Item>, Error<GetItemError>> {
        let access = if self.consistent {
            Access::Active
        } else {
            Access::Read
        };
        let GetItem {
            table,
            key,
            consistent,
            projection,
            expr,
        } = self;
        let out = Call::new(table, access, |client, name| {
            client
                .get_item()
                .table_name(name)
                .set_key(Some(key.clone()))
                .consistent_read(consistent)
                .set_projection_expression(projection.clone())
                .set_expression_attribute_names(expr.names())
                .send()
        })
        .idempotent(true)
        .send()
        .await?;
        Ok(out.item)
    }
}

/// A `PutItem` through a [`Table`]; see [`Table::put_item`].
#[must_use = "a call does nothing until `send` is awaited"]
pub struct PutItem<'t> {
    table: &'t Table,
    item: Item,
    idempotent: Option<bool>,
    expr: Expr,
}
debug_without_values!(PutItem, idempotent);

impl PutItem<'_> {
    expr_setters!();

    condition_setter!();

    /// Overrides the idempotency (default: `true` without a condition, `false` with one).
    pub fn idempotent(mut self, yes: bool) -> Self {
        self.idempotent = Some(yes);
        self
    }

    /// Runs the call.
    ///
    /// # Errors
    ///
    /// See [`Error`]; a failed condition is [`Error::is_conditional_check_failed`].
    pub async fn send(self) -> Result<PutItemOutput, Error<PutItemError>> {
        let access = self.expr.write_access();
        let idempotent = self.idempotent.unwrap_or(access == Access::Write);
        let PutItem {
            table, item, expr, ..
        } = self;
        Call::new(table, access, |client, name| {
            client
                .put_item()
                .table_name(name)
                .set_item(Some(item.clone()))
                .set_condition_expression(expr.condition.clone())
                .set_expression_attribute_names(expr.names())
                .set_expression_attribute_values(expr.values())
                .send()
        })
        .idempotent(idempotent)
        .send()
        .await
    }
}

/// An `UpdateItem` through a [`Table`]; see [`Table::update_item`].
#[must_use = "a call does nothing until `send` is awaited"]
pub struct UpdateItem<'t> {
    table: &'t Table,
    key: Item,
    update: String,
    idempotent: Option<bool>,
    expr: Expr,
}
debug_without_values!(UpdateItem, update, idempotent);

impl UpdateItem<'_> {
    expr_setters!();

    condition_setter!();

    /// Marks the update idempotent (default `false`): only for updates that set values, never
    /// for `ADD` or arithmetic.
    pub fn idempotent(mut self, yes: bool) -> Self {
        self.idempotent = Some(yes);
        self
    }

    /// Runs the call.
    ///
    /// # Errors
    ///
    /// See [`Error`].
    pub async fn send(self) -> Result<UpdateItemOutput, Error<UpdateItemError>> {
        let access = self.expr.write_access();
        let idempotent = self.idempotent.unwrap_or(false);
        let UpdateItem {
            table,
            key,
            update,
            expr,
            ..
        } = self;
        Call::new(table, access, |client, name| {
            client
                .update_item()
                .table_name(name)
                .set_key(Some(key.clone()))
                .update_expression(update.clone())
                .set_condition_expression(expr.condition.clone())
                .set_expression_attribute_names(expr.names())
                .set_expression_attribute_values(expr.values())
                .return_values(ReturnValue::AllNew)
                .send()
        })
        .idempotent(idempotent)
        .send()
        .await
    }
}

/// A `DeleteItem` through a [`Table`]; see [`Table::delete_item`].
#[must_use = "a call does nothing until `send` is awaited"]
pub struct DeleteItem<'t> {
    table: &'t Table,
    key: Item,
    idempotent: Option<bool>,
    expr: Expr,
}
debug_without_values!(DeleteItem, idempotent);

impl DeleteItem<'_> {
    expr_setters!();

    condition_setter!();

    /// Overrides the idempotency (default: `true` without a condition, `false` with one).
    pub fn idempotent(mut self, yes: bool) -> Self {
        self.idempotent = Some(yes);
        self
    }

    /// Runs the call.
    ///
    /// # Errors
    ///
    /// See [`Error`].
    pub async fn send(self) -> Result<DeleteItemOutput, Error<DeleteItemError>> {
        let access = self.expr.write_access();
        let idempotent = self.idempotent.unwrap_or(access == Access::Write);
        let DeleteItem {
            table, key, expr, ..
        } = self;
        Call::new(table, access, |client, name| {
            client
                .delete_item()
                .table_name(name)
                .set_key(Some(key.clone()))
                .set_condition_expression(expr.condition.clone())
                .set_expression_attribute_names(expr.names())
                .set_expression_attribute_values(expr.values())
                .send()
        })
        .idempotent(idempotent)
        .send()
        .await
    }
}

/// A `Query` (one page) through a [`Table`]; see [`Table::query`].
#[must_use = "a call does nothing until `send` is awaited"]
pub struct Query<'t> {
    table: &'t Table,
    key_condition: String,
    index: Option<String>,
    filter: Option<String>,
    limit: Option<i32>,
    consistent: bool,
    start_key: Option<Item>,
    expr: Expr,
}
debug_without_values!(Query, key_condition, index, filter, limit, consistent);

impl Query<'_> {
    expr_setters!();

    /// Queries this secondary index.
    pub fn index(mut self, name: impl Into<String>) -> Self {
        self.index = Some(name.into());
        self
    }

    /// A filter expression.
    pub fn filter(mut self, expression: impl Into<String>) -> Self {
        self.filter = Some(expression.into());
        self
    }

    /// At most `n` items evaluated.
    pub fn limit(mut self, n: i32) -> Self {
        self.limit = Some(n);
        self
    }

    /// A strongly consistent query (default `false`): always on the active region.
    pub fn consistent_read(mut self, yes: bool) -> Self {
        self.consistent = yes;
        self
    }

    /// Continues after this key (the previous page's `last_evaluated_key`).
    pub fn start_key(mut self, key: Item) -> Self {
        self.start_key = Some(key);
        self
    }

    /// Runs the call.
    ///
    /// # Errors
    ///
    /// See [`Error`].
    pub async fn send(self) -> Result<QueryOutput, Error<QueryError>> {
        let access = if self.consistent {
            Access::Active
        } else {
            Access::Read
        };
        let Query {
            table,
            key_condition,
            index,
            filter,
            limit,
            consistent,
            start_key,
            expr,
        } = self;
        Call::new(table, access, |client, name| {
            client
                .query()
                .table_name(name)
                .key_condition_expression(key_condition.clone())
                .set_index_name(index.clone())
                .set_filter_expression(filter.clone())
                .set_limit(limit)
                .consistent_read(consistent)
                .set_exclusive_start_key(start_key.clone())
                .set_expression_attribute_names(expr.names())
                .set_expression_attribute_values(expr.values())
                .send()
        })
        .idempotent(true)
        .send()
        .await
    }
}
