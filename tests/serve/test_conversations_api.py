"""OpenAI's Conversations API on the tiny model, through the official client: items kept in order, a response that
continues a conversation answers with it as context and is appended to it, items added and deleted, other keys
and retention."""
import time

import openai
import pytest

from tunesmith.registry import audit, keys
from tunesmith.serve.retention import expire


@pytest.fixture
def served(served_openai):
    return served_openai


def test_a_response_continues_a_conversation_and_joins_it(served):
    client, model = served
    conversation = client.conversations.create(items=[{"role": "user", "content": "Name a gas."},
                                                      {"role": "assistant", "content": "Neon."}],
                                               metadata={"topic": "elements"})
    assert conversation.id.startswith("conv_") and conversation.metadata == {"topic": "elements"}
    response = client.responses.create(model=model, conversation=conversation.id, input="And a metal?",
                                       max_output_tokens=5, temperature=0)
    chat = client.chat.completions.create(model=model, max_completion_tokens=5, temperature=0, messages=[
        {"role": "user", "content": "Name a gas."}, {"role": "assistant", "content": "Neon."},
        {"role": "user", "content": "And a metal?"}])
    assert response.output_text == chat.choices[0].message.content and response.conversation.id == conversation.id
    items = list(client.conversations.items.list(conversation.id, order="asc"))
    assert [(i.type, i.role) for i in items] == [("message", "user"), ("message", "assistant"),
                                                 ("message", "user"), ("message", "assistant")]
    assert items[2].content[0].text == "And a metal?" and items[3].content[0].text == response.output_text
    assert items[3].id == response.output[0].id
    # the next turn sees all four, and adds two more
    client.responses.create(model=model, conversation={"id": conversation.id}, input="Why?", max_output_tokens=3)
    assert len(list(client.conversations.items.list(conversation.id))) == 6
    with pytest.raises(openai.BadRequestError) as both:
        client.responses.create(model=model, conversation=conversation.id, previous_response_id=response.id, input="x")
    assert both.value.body["param"] == "conversation"


def test_items_are_added_listed_and_deleted(served):
    client, _ = served
    conversation = client.conversations.create()
    added = client.conversations.items.create(conversation.id, items=[
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "one"}]},
        {"type": "message", "role": "user", "content": "two"}])
    assert [item.content[0].text for item in added.data] == ["one", "two"]
    newest_first = client.conversations.items.list(conversation.id)
    assert [item.content[0].text for item in newest_first] == ["two", "one"]
    one = client.conversations.items.retrieve(added.data[0].id, conversation_id=conversation.id)
    assert one.content[0].text == "one"
    assert client.conversations.items.delete(added.data[0].id, conversation_id=conversation.id).id == conversation.id
    assert [item.content[0].text for item in client.conversations.items.list(conversation.id)] == ["two"]
    assert client.conversations.update(conversation.id, metadata={"k": "v"}).metadata == {"k": "v"}
    with pytest.raises(openai.BadRequestError) as refused:
        client.conversations.items.create(conversation.id, items=[{"role": "user", "content": [
            {"type": "input_image", "image_url": "http://x"}]}])
    assert refused.value.body["param"] == "items[0].content[0]"
    assert client.conversations.delete(conversation.id).deleted
    with pytest.raises(openai.NotFoundError):
        client.conversations.retrieve(conversation.id)


def test_other_keys_and_retention(served):
    client, model = served
    conversation = client.conversations.create(items=[{"role": "user", "content": "hi"}])
    http = client._client
    other = openai.OpenAI(base_url="http://testserver/v1", api_key=keys.create_key(http.app.state.db)[1],
                          http_client=http, max_retries=0)
    with pytest.raises(openai.NotFoundError):
        other.conversations.items.list(conversation.id)
    with pytest.raises(openai.NotFoundError):
        other.responses.create(model=model, conversation=conversation.id, input="x")
    inference = openai.OpenAI(base_url="http://testserver/v1", http_client=http, max_retries=0,
                              api_key=keys.create_key(http.app.state.db, scope="inference-only")[1])
    inference.conversations.delete(inference.conversations.create().id)  # its own state: allowed
    state = http.app.state
    settings = state.settings.model_copy(update={"retention_days": 1})
    assert conversation.id in expire(state.db, settings, time.time() + 2 * 86400)
    with pytest.raises(openai.NotFoundError):
        client.conversations.retrieve(conversation.id)
    assert ("retention", "conversation.expired") in [(e["actor"], e["action"]) for e in audit.entries(state.db)
                                                     if e["object_id"] == conversation.id]
