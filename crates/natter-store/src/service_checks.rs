//! natter-core's checks of the services that need a real store, run on each backend (natter-core
//! has no store of its own to run them on).

use natter_core::{member_lists, receipts};

use super::testing::on_each_backend;

/// Runs [`member_lists::checks::a_list_serves_plans_until_the_members_change`] on each backend.
#[tokio::test]
async fn member_lists_a_list_serves_plans_until_the_members_change() {
    on_each_backend(member_lists::checks::a_list_serves_plans_until_the_members_change).await;
}

/// Runs [`member_lists::checks::only_a_members_plan_lists_a_room`] on each backend.
#[tokio::test]
async fn member_lists_only_a_members_plan_lists_a_room() {
    on_each_backend(member_lists::checks::only_a_members_plan_lists_a_room).await;
}

/// Runs [`member_lists::checks::a_listed_room_still_refuses_outsiders_and_removed_members`] on each backend.
#[tokio::test]
async fn member_lists_a_listed_room_still_refuses_outsiders_and_removed_members() {
    on_each_backend(
        member_lists::checks::a_listed_room_still_refuses_outsiders_and_removed_members,
    )
    .await;
}

/// Runs [`member_lists::checks::a_room_under_listed_from_is_not_listed`] on each backend.
#[tokio::test]
async fn member_lists_a_room_under_listed_from_is_not_listed() {
    on_each_backend(member_lists::checks::a_room_under_listed_from_is_not_listed).await;
}

/// Runs [`member_lists::checks::listing_past_rooms_max_drops_another_room`] on each backend.
#[tokio::test]
async fn member_lists_listing_past_rooms_max_drops_another_room() {
    on_each_backend(member_lists::checks::listing_past_rooms_max_drops_another_room).await;
}

/// Runs [`receipts::checks::a_busy_conversation_gets_one_frame_per_window`] on each backend, on one thread as the check asks.
#[tokio::test(flavor = "current_thread")]
async fn a_busy_conversation_gets_one_frame_per_window() {
    on_each_backend(receipts::checks::a_busy_conversation_gets_one_frame_per_window).await;
}

/// Runs [`receipts::checks::a_window_goes_to_everyone_its_moves_concern`] on each backend, on one thread as the check asks.
#[tokio::test(flavor = "current_thread")]
async fn a_window_goes_to_everyone_its_moves_concern() {
    on_each_backend(receipts::checks::a_window_goes_to_everyone_its_moves_concern).await;
}

/// Runs [`receipts::checks::receipts_skip_former_members_and_both_sides_of_a_block`] on each backend, on one thread as the check asks.
#[tokio::test(flavor = "current_thread")]
async fn receipts_skip_former_members_and_both_sides_of_a_block() {
    on_each_backend(receipts::checks::receipts_skip_former_members_and_both_sides_of_a_block).await;
}

/// Runs [`receipts::checks::a_window_of_one_movers_moves_skips_the_senders_in_a_block_with_it`] on each backend, on one thread as the check asks.
#[tokio::test(flavor = "current_thread")]
async fn a_window_of_one_movers_moves_skips_the_senders_in_a_block_with_it() {
    on_each_backend(
        receipts::checks::a_window_of_one_movers_moves_skips_the_senders_in_a_block_with_it,
    )
    .await;
}
