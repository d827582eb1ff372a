//! What the generated OpenAPI document says of every operation alike, applied once instead of
//! repeated on each handler's annotation.

use axum::http::StatusCode;
use natter_proto::problem::CONTENT_TYPE as PROBLEM;
use utoipa::openapi::path::{Operation, ParameterIn, PathItem};
use utoipa::openapi::{ContentBuilder, OpenApi, Ref, RefOr, ResponseBuilder};

/// Finishes `document`:
/// - every error response (4xx, 5xx) is `application/problem+json`, as it is served;
/// - a response without a description gets its status's reason phrase (OpenAPI requires one);
/// - an operation with path parameters declares the 400 it answers when one is malformed.
pub fn finish(document: &mut OpenApi) {
    for item in document.paths.paths.values_mut() {
        for operation in operations(item) {
            let path_parameters = operation.parameters.iter().flatten().any(|parameter| {
                matches!(parameter, RefOr::T(p) if matches!(p.parameter_in, ParameterIn::Path))
            });
            let responses = &mut operation.responses.responses;
            if path_parameters && !responses.contains_key("400") {
                let problem = ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name("Problem")))
                    .build();
                let malformed = ResponseBuilder::new()
                    .description("a malformed path parameter")
                    .content(PROBLEM, problem)
                    .build();
                responses.insert("400".to_owned(), RefOr::T(malformed));
            }
            for (status, response) in responses.iter_mut() {
                let RefOr::T(response) = response else {
                    continue;
                };
                if response.description.is_empty() {
                    response.description = reason(status);
                }
                if (status.starts_with('4') || status.starts_with('5'))
                    && let Some(content) = response.content.shift_remove("application/json")
                {
                    response.content.insert(PROBLEM.to_owned(), content);
                }
            }
        }
    }
}

/// The operations of a path, whatever their methods.
fn operations(item: &mut PathItem) -> impl Iterator<Item = &mut Operation> {
    [
        &mut item.get,
        &mut item.put,
        &mut item.post,
        &mut item.delete,
        &mut item.options,
        &mut item.head,
        &mut item.patch,
        &mut item.trace,
    ]
    .into_iter()
    .filter_map(Option::as_mut)
}

/// The reason phrase of a status written as in a document (`"404"`).
fn reason(status: &str) -> String {
    status
        .parse::<u16>()
        .ok()
        .and_then(|code| StatusCode::from_u16(code).ok())
        .and_then(|code| code.canonical_reason())
        .unwrap_or("response")
        .to_owned()
}
