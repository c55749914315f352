"""The productpage service: the BookInfo web page and its JSON API, calling details, reviews
and ratings."""
