//! natter-core's checks of the services that need a real store, run on each backend.

use natter_core::{member_lists, receipts};

use super::testing::on_each_backend;

#[tokio::test]
async fn member_lists_a_list_serves_plans_until_the_members_change() {
    on_each_backend(member_lists::checks::a_list_serves_plans_until_the_members_change).await;
}

#[tokio::test]
async fn member_lists_only_a_members_plan_lists_a_room() {
    on_each_backend(member_lists::checks::only_a_members_plan_lists_a_room).await;
}

#[tokio::test]
async fn member_lists_a_listed_room_still_refuses_outsiders_and_removed_members() {
    on_each_backend(
        member_lists::checks::a_listed_room_still_refuses_outsiders_and_removed_members,
    )
    .await;
}

#[tokio::test]
async fn member_lists_a_room_under_listed_from_is_not_listed() {
    on_each_backend(member_lists::checks::a_room_under_listed_from_is_not_listed).await;
}

#[tokio::test]
async fn member_lists_listing_past_rooms_max_drops_another_room() {
    on_each_backend(member_lists::checks::listing_past_rooms_max_drops_another_room).await;
}

// One thread, as the check asks.
#[tokio::test(flavor = "current_thread")]
async fn a_busy_conversation_gets_one_frame_per_window() {
    on_each_backend(receipts::checks::a_busy_conversation_gets_one_frame_per_window).await;
}

// One thread, as the check asks.
#[tokio::test(flavor = "current_thread")]
async fn a_window_goes_to_everyone_its_moves_concern() {
    on_each_backend(receipts::checks::a_window_goes_to_everyone_its_moves_concern).await;
}

// One thread, as the check asks.
#[tokio::test(flavor = "current_thread")]
async fn receipts_skip_former_members_and_both_sides_of_a_block() {
    on_each_backend(receipts::checks::receipts_skip_former_members_and_both_sides_of_a_block).await;
}

// One thread, as the check asks.
#[tokio::test(flavor = "current_thread")]
async fn a_window_of_one_movers_moves_skips_the_senders_in_a_block_with_it() {
    on_each_backend(
        receipts::checks::a_window_of_one_movers_moves_skips_the_senders_in_a_block_with_it,
    )
    .await;
}
