"""The [sources] settings: feeds, pages and folders with their per-source options."""

from __future__ import annotations

import pytest

from newsletter.config import CONFIG_FILE, SourceSpec, collect, load
from newsletter.errors import ConfigError

ORIGIN = "ws/newsletter.toml"
SENDER = {"from_address": "news@clinic.example.com", "postal_address": "1 River Road"}


def settings_with(sources: dict, env: dict | None = None):
    return collect({"sender": SENDER, "sources": sources}, env or {}, ORIGIN)


def test_plain_strings_and_tables_become_sources_with_defaults():
    settings, problems = settings_with(
        {
            "folders": ["articles"],
            "feeds": [
                "https://blog.example.com/feed/",
                {
                    "url": "https://clinic.example.com/blog-feed.xml",
                    "full_text": True,
                    "backfill": 3,
                    "wix_site_id": "site-1",
                },
            ],
            "pages": [{"url": "https://clinic.example.com/blog", "announce_updates": True}],
        }
    )
    assert problems == []
    assert settings.sources.specs() == [
        SourceSpec("folder", "articles", backfill=None),
        SourceSpec("feed", "https://blog.example.com/feed/", backfill=0),
        SourceSpec(
            "feed",
            "https://clinic.example.com/blog-feed.xml",
            full_text=True,
            backfill=3,
            wix_site_id="site-1",
        ),
        SourceSpec("page", "https://clinic.example.com/blog", announce_updates=True),
    ]


def test_the_section_default_for_announce_updates_and_backfill_all():
    settings, problems = settings_with(
        {"announce_updates": True, "feeds": [{"url": "https://a.example/f", "backfill": "all"}]}
    )
    assert problems == []
    [_, feed] = settings.sources.specs()
    assert feed.announce_updates is True and feed.backfill is None


def test_feeds_from_the_environment():
    settings, problems = settings_with(
        {},
        {
            "NEWSLETTER_SOURCES__FEEDS": "https://a.example/feed, https://b.example/rss",
            "NEWSLETTER_SOURCES__ALLOW_PRIVATE_ADDRESSES": "true",
            "NEWSLETTER_SOURCES__ALLOWED_NETWORKS": "10.0.0.0/8,192.168.1.20",
        },
    )
    assert problems == []
    assert [s.location for s in settings.sources.specs() if s.kind == "feed"] == [
        "https://a.example/feed",
        "https://b.example/rss",
    ]
    assert settings.sources.allow_private_addresses is True
    assert settings.sources.allowed_networks == ["10.0.0.0/8", "192.168.1.20"]


@pytest.mark.parametrize(
    ("sources", "expected"),
    [
        ({"feeds": ["ftp://a.example/feed"]}, "sources.feeds[0]: 'ftp://a.example/feed' must"),
        (
            {"feeds": [{"url": "https://a.example/f", "fulltext": True}]},
            "unknown option 'fulltext'",
        ),
        ({"feeds": [{"url": "https://a.example/f", "full_text": "yes"}]}, "full_text: expected"),
        ({"pages": [{"url": "https://a.example/p", "full_text": True}]}, "for a page"),
        ({"feeds": [{"url": "https://a.example/f", "backfill": -1}]}, "sources.feeds[0].backfill"),
        ({"feeds": [{"full_text": True}]}, "sources.feeds[0]: give the feed's url"),
        ({"folders": [{"path": "a"}, "a"]}, "sources.folders[1]: a is listed twice"),
        ({"feeds": [{"url": "https://a.example/f", "api_key": "k"}]}, "secrets must not"),
        ({"allowed_networks": ["not-a-net"]}, "sources.allowed_networks: 'not-a-net'"),
        ({"timeout": 0}, "sources.timeout"),
        ({"max_bytes": 10}, "sources.max_bytes"),
        ({"feeds": [1, 2]}, f"{ORIGIN}: sources.feeds: expected a list"),
    ],
)
def test_problems_name_the_entry_and_option(sources, expected):
    _, problems = settings_with(sources)
    assert any(expected in p for p in problems), problems


def test_feeds_and_pages_are_supported_now():
    _, problems = settings_with(
        {"feeds": ["https://a.example/feed"], "pages": ["https://a.example/blog"]}
    )
    assert problems == []


def test_an_array_of_tables_in_the_file(tmp_path):
    (tmp_path / CONFIG_FILE).write_text(
        '[sender]\nfrom_address = "n@clinic.example.com"\npostal_address = "1 Road"\n'
        "[sources]\nallow_private_addresses = true\n"
        '[[sources.feeds]]\nurl = "https://clinic.example.com/blog-feed.xml"\nfull_text = true\n'
        '[[sources.feeds]]\nurl = "https://other.example/feed"\n'
    )
    settings, problems = load(tmp_path, env={})
    assert problems == []
    feeds = [s for s in settings.sources.specs() if s.kind == "feed"]
    assert [(f.location, f.full_text) for f in feeds] == [
        ("https://clinic.example.com/blog-feed.xml", True),
        ("https://other.example/feed", False),
    ]


def test_specs_refuses_a_bad_entry_instead_of_leaving_it_out():
    settings, problems = settings_with(
        {"feeds": ["https://a.example/feed", "ftp://b.example/feed"]}
    )
    assert problems == [
        "sources.feeds[1]: 'ftp://b.example/feed' must start with http:// or https://"
    ]
    with pytest.raises(ConfigError, match=r"^sources.feeds\[1\]: 'ftp://b.example/feed'"):
        settings.sources.specs()
