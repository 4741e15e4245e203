//! Checking a query before any field runs: the operation chosen, every
//! selection against the schema (fields, arguments, input fields,
//! fragments), MLflow's bounds, and the variables coerced.

use std::collections::HashSet;

use graphql_parser::query as q;
use serde_json::{json, Map, Value};

use super::schema::SCHEMA;
use super::{Execution, GraphqlRequest, Set, Variables};

const MAX_DEPTH: usize = 10;
const MAX_SELECTIONS: usize = 1_000;
const MAX_ROOT_FIELDS: usize = 10;
const MAX_ALIASES: usize = 10;

/// A request-level failure: no field was run.
pub(super) struct Refusal(pub(super) String);

/// Picks the operation, checks the whole document against the schema and
/// MLflow's bounds, and coerces the variables.
pub(super) fn prepare<'d>(
    document: &'d q::Document<'static, String>,
    execution: &mut Execution,
    request: GraphqlRequest,
) -> Result<(&'static str, &'d Set), Refusal> {
    scan(document)?;
    let mut operations = Vec::new();
    for definition in &document.definitions {
        match definition {
            q::Definition::Fragment(fragment) => {
                if execution
                    .fragments
                    .insert(fragment.name.clone(), fragment.clone())
                    .is_some()
                {
                    return Err(Refusal(format!(
                        "There can be only one fragment named '{}'.",
                        fragment.name
                    )));
                }
            }
            q::Definition::Operation(operation) => operations.push(operation),
        }
    }
    fn name_of<'a>(operation: &'a q::OperationDefinition<'static, String>) -> Option<&'a str> {
        match operation {
            q::OperationDefinition::SelectionSet(_) => None,
            q::OperationDefinition::Query(query) => query.name.as_deref(),
            q::OperationDefinition::Mutation(mutation) => mutation.name.as_deref(),
            q::OperationDefinition::Subscription(subscription) => subscription.name.as_deref(),
        }
    }
    let operation = match &request.operation_name {
        Some(wanted) => operations
            .iter()
            .find(|operation| name_of(operation) == Some(wanted.as_str()))
            .ok_or_else(|| Refusal(format!("Unknown operation named '{wanted}'.")))?,
        None if operations.len() == 1 => &operations[0],
        None if operations.is_empty() => return Err(Refusal("Must provide an operation.".to_string())),
        None => {
            return Err(Refusal(
                "Must provide operation name if query contains multiple operations.".to_string(),
            ))
        }
    };
    let (root_type, definitions, selection_set) = match operation {
        q::OperationDefinition::SelectionSet(set) => ("Query", &[][..], set),
        q::OperationDefinition::Query(query) => {
            ("Query", &query.variable_definitions[..], &query.selection_set)
        }
        q::OperationDefinition::Mutation(mutation) => (
            "Mutation",
            &mutation.variable_definitions[..],
            &mutation.selection_set,
        ),
        q::OperationDefinition::Subscription(_) => {
            return Err(Refusal("Schema is not configured for subscriptions.".to_string()))
        }
    };
    for definition in definitions {
        let value = match request.variables.get(&definition.name) {
            Some(value) => value.clone(),
            None => match &definition.default_value {
                Some(default) => literal(default, &Map::new())?,
                None if matches!(definition.var_type, q::Type::NonNullType(_)) => {
                    return Err(Refusal(format!(
                        "Variable '${}' of required type '{}' was not provided.",
                        definition.name, definition.var_type
                    )))
                }
                None => Value::Null,
            },
        };
        execution.variables.insert(definition.name.clone(), value);
    }
    let mut bounds = Bounds {
        selections_left: MAX_SELECTIONS,
        most_aliases: 0,
    };
    let roots = validate(
        execution,
        root_type,
        selection_set,
        1,
        &mut bounds,
        &mut HashSet::new(),
    )?;
    // In MLflow's order: root fields first, then aliases.
    if roots > MAX_ROOT_FIELDS {
        return Err(Refusal(format!(
            "GraphQL queries should have at most {MAX_ROOT_FIELDS} root fields, got {roots} root fields."
        )));
    }
    if bounds.most_aliases > MAX_ALIASES {
        return Err(Refusal(format!(
            "GraphQL queries should have at most {MAX_ALIASES} aliases, got {} aliases.",
            bounds.most_aliases
        )));
    }
    Ok((root_type, selection_set))
}

/// MLflow's safety scan (`check_query_safety`), over the text alone before
/// anything is checked against the schema, so a query past a bound is
/// refused for the bound first, in MLflow's words and order: depth, total
/// selections (fragments followed, each once per branch), then root fields
/// and aliases on one level (fragments' fields counted on the level they
/// are spread into).
fn scan(document: &q::Document<'static, String>) -> Result<(), Refusal> {
    let fragments: std::collections::HashMap<&str, &Set> = document
        .definitions
        .iter()
        .filter_map(|definition| match definition {
            q::Definition::Fragment(fragment) => Some((fragment.name.as_str(), &fragment.selection_set)),
            q::Definition::Operation(_) => None,
        })
        .collect();
    let (mut roots, mut most_aliases, mut total) = (0usize, 0usize, 0usize);
    for definition in &document.definitions {
        let set = match definition {
            q::Definition::Operation(q::OperationDefinition::SelectionSet(set)) => set,
            q::Definition::Operation(q::OperationDefinition::Query(query)) => &query.selection_set,
            q::Definition::Operation(q::OperationDefinition::Mutation(mutation)) => &mutation.selection_set,
            q::Definition::Operation(q::OperationDefinition::Subscription(subscription)) => {
                &subscription.selection_set
            }
            q::Definition::Fragment(_) => continue,
        };
        let mut stack: Vec<(&Set, usize, HashSet<&str>)> = vec![(set, 1, HashSet::new())];
        while let Some((set, depth, visited)) = stack.pop() {
            if depth > MAX_DEPTH {
                return Err(Refusal(format!("Query exceeds maximum depth of {MAX_DEPTH}")));
            }
            // This level's fields, with those of its fragments.
            let mut fields = Vec::new();
            let mut aliases = 0;
            let mut seen = visited.clone();
            let mut pending: std::collections::VecDeque<&q::Selection<'static, String>> =
                set.items.iter().collect();
            while let Some(selection) = pending.pop_front() {
                match selection {
                    q::Selection::Field(field) => {
                        if field.alias.is_some() {
                            aliases += 1;
                        }
                        fields.push(field);
                    }
                    q::Selection::InlineFragment(fragment) => {
                        pending.extend(fragment.selection_set.items.iter())
                    }
                    q::Selection::FragmentSpread(spread) => {
                        if seen.insert(spread.fragment_name.as_str()) {
                            if let Some(fragment) = fragments.get(spread.fragment_name.as_str()) {
                                pending.extend(fragment.items.iter());
                            }
                        }
                    }
                }
            }
            for field in fields {
                if depth == 1 {
                    roots += 1;
                }
                if !field.selection_set.items.is_empty() {
                    stack.push((&field.selection_set, depth + 1, visited.clone()));
                }
                total += 1;
                if total > MAX_SELECTIONS {
                    return Err(Refusal(format!(
                        "Query exceeds maximum total selections of {MAX_SELECTIONS}"
                    )));
                }
            }
            most_aliases = most_aliases.max(aliases);
        }
    }
    if roots > MAX_ROOT_FIELDS {
        return Err(Refusal(format!(
            "GraphQL queries should have at most {MAX_ROOT_FIELDS} root fields, got {roots} root fields."
        )));
    }
    if most_aliases > MAX_ALIASES {
        return Err(Refusal(format!(
            "GraphQL queries should have at most {MAX_ALIASES} aliases, got {most_aliases} aliases."
        )));
    }
    Ok(())
}

/// What a query has used of MLflow's bounds so far.
struct Bounds {
    selections_left: usize,
    /// The most aliases on one level.
    most_aliases: usize,
}

/// Checks a selection set against `type_name`'s fields (every fragment
/// followed), within MLflow's bounds; returns how many fields it selects.
fn validate(
    execution: &Execution,
    type_name: &str,
    set: &Set,
    depth: usize,
    bounds: &mut Bounds,
    visiting: &mut HashSet<String>,
) -> Result<usize, Refusal> {
    if depth > MAX_DEPTH {
        return Err(Refusal(format!("Query exceeds maximum depth of {MAX_DEPTH}")));
    }
    let Some(fields) = SCHEMA.objects.get(type_name) else {
        return Err(Refusal(format!("Unknown type '{type_name}'.")));
    };
    let mut count = 0;
    let mut aliases = 0;
    for item in &set.items {
        match item {
            q::Selection::Field(field) => {
                count += 1;
                bounds.selections_left = bounds.selections_left.checked_sub(1).ok_or_else(|| {
                    Refusal(format!(
                        "Query exceeds maximum total selections of {MAX_SELECTIONS}"
                    ))
                })?;
                if field.alias.is_some() {
                    aliases += 1;
                }
                if field.name == "__typename" {
                    continue;
                }
                let Some((ty, arguments)) = fields.get(&field.name) else {
                    return Err(Refusal(format!(
                        "Cannot query field '{}' on type '{type_name}'.",
                        field.name
                    )));
                };
                for (name, value) in &field.arguments {
                    let Some(input_type) = arguments.get(name) else {
                        return Err(Refusal(format!(
                            "Unknown argument '{name}' on field '{type_name}.{}'.",
                            field.name
                        )));
                    };
                    check_input(input_type, &literal(value, &execution.variables)?)?;
                }
                let is_object = SCHEMA.objects.contains_key(&ty.name);
                match (is_object, field.selection_set.items.is_empty()) {
                    (true, true) => {
                        return Err(Refusal(format!(
                            "Field '{}' of type '{}' must have a selection of subfields.",
                            field.name, ty.name
                        )))
                    }
                    (false, false) => {
                        return Err(Refusal(format!(
                            "Field '{}' must not have a selection since type '{}' has no subfields.",
                            field.name, ty.name
                        )))
                    }
                    (true, false) => {
                        validate(
                            execution,
                            &ty.name,
                            &field.selection_set,
                            depth + 1,
                            bounds,
                            visiting,
                        )?;
                    }
                    (false, true) => {}
                }
            }
            q::Selection::InlineFragment(fragment) => {
                if let Some(q::TypeCondition::On(on)) = &fragment.type_condition {
                    if on != type_name {
                        return Err(Refusal(format!(
                            "Fragment cannot be spread here as objects of type '{type_name}' can never be of type '{on}'."
                        )));
                    }
                }
                count += validate(
                    execution,
                    type_name,
                    &fragment.selection_set,
                    depth,
                    bounds,
                    visiting,
                )?;
            }
            q::Selection::FragmentSpread(spread) => {
                let Some(fragment) = execution.fragments.get(&spread.fragment_name) else {
                    return Err(Refusal(format!("Unknown fragment '{}'.", spread.fragment_name)));
                };
                let q::TypeCondition::On(on) = &fragment.type_condition;
                if on != type_name {
                    return Err(Refusal(format!(
                        "Fragment '{}' cannot be spread here as objects of type '{type_name}' can never be of type '{on}'.",
                        spread.fragment_name
                    )));
                }
                if !visiting.insert(spread.fragment_name.clone()) {
                    return Err(Refusal(format!(
                        "Cannot spread fragment '{}' within itself.",
                        spread.fragment_name
                    )));
                }
                count += validate(
                    execution,
                    type_name,
                    &fragment.selection_set,
                    depth,
                    bounds,
                    visiting,
                )?;
                visiting.remove(&spread.fragment_name);
            }
        }
    }
    bounds.most_aliases = bounds.most_aliases.max(aliases);
    Ok(count)
}

/// An input object's fields must be the input type's.
fn check_input(input_type: &str, value: &Value) -> Result<(), Refusal> {
    let (Some(fields), Value::Object(given)) = (SCHEMA.inputs.get(input_type), value) else {
        return Ok(());
    };
    for key in given.keys() {
        if !fields.contains(key) {
            return Err(Refusal(format!(
                "Field '{key}' is not defined by type '{input_type}'."
            )));
        }
    }
    Ok(())
}

/// A literal of the query as JSON, variables substituted.
pub(super) fn literal(value: &q::Value<'static, String>, variables: &Variables) -> Result<Value, Refusal> {
    Ok(match value {
        q::Value::Variable(name) => match variables.get(name) {
            Some(value) => value.clone(),
            None => return Err(Refusal(format!("Variable '${name}' is not defined."))),
        },
        q::Value::Int(number) => number.as_i64().map(Value::from).unwrap_or(Value::Null),
        q::Value::Float(number) => json!(number),
        q::Value::String(text) => Value::String(text.clone()),
        q::Value::Boolean(flag) => Value::Bool(*flag),
        q::Value::Null => Value::Null,
        q::Value::Enum(name) => Value::String(name.clone()),
        q::Value::List(items) => Value::Array(
            items
                .iter()
                .map(|item| literal(item, variables))
                .collect::<Result<_, _>>()?,
        ),
        q::Value::Object(fields) => Value::Object(
            fields
                .iter()
                .map(|(key, item)| Ok((key.to_string(), literal(item, variables)?)))
                .collect::<Result<_, Refusal>>()?,
        ),
    })
}

/// `@skip(if:)` and `@include(if:)`.
pub(super) fn included(directives: &[q::Directive<'static, String>], variables: &Variables) -> bool {
    directives.iter().all(|directive| {
        let condition = directive
            .arguments
            .iter()
            .find(|(name, _)| name == "if")
            .and_then(|(_, value)| literal(value, variables).ok())
            .and_then(|value| value.as_bool());
        !matches!(
            (directive.name.as_str(), condition),
            ("skip", Some(true)) | ("include", Some(false))
        )
    })
}
