/* SPDX-License-Identifier: MIT */
/* product_seed.c — `emporium seed --products N [--categories M] [--seed S]` and the demo
 * catalog that `emporium serve` creates when the catalog is empty.
 *
 * The generator is deterministic: product number k (counted over the whole catalog) is drawn
 * from a PRNG seeded with (S, k) alone, so the same command on an empty catalog always gives
 * the same products, and a second run appends new ones (SKUs EMP-<k>). Names, descriptions
 * and categories come from per-category vocabularies, so searching "lamp" or "leather"
 * finds what a shopper would expect, and names share words across categories ("travel mug",
 * "travel backpack") so ranking has work to do.
 *
 * Speed: everything goes in one transaction, with INSERTs of a fixed shape: one row per
 * statement on SQLite (the cached prepared statement is reused 100,000 times), 200 rows per
 * statement on PostgreSQL (few round trips). The
 * denormalised products.stock_available is written in the same pass; stock itself is then
 * handed to the inventory service with inventory_set_many_quiet(), which records it without
 * announcing stock.changed events back to the catalog (there is nothing left to do). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "emporium/app.h"
#include "emporium/err.h"
#include "emporium/id.h"
#include "emporium/log.h"
#include "emporium/svc/inventory.h"
#include "product_internal.h"

/* Rows per INSERT: PostgreSQL wants few round trips; SQLite binds $n parameters by name,
 * which costs O(parameters) per parameter, so there one reused single-row statement wins. */
#define SEED_BATCH 200
#define SEED_COLS PRODUCT_SEED_COLS
#define DEMO_PRODUCTS 300
#define DEMO_CATEGORIES 12

struct vocab {
    const char *slug, *name;
    const char *nouns[8];
    const char *uses[3];
    int min_price, max_price; /* major units */
    int weight;               /* grams, typical */
};

static const struct vocab vocabs[] = {
    {"lighting",
     "Lighting",
     {"Desk Lamp", "Floor Lamp", "Pendant Light", "Wall Sconce", "Night Light", "String Lights",
      "Reading Lamp", "Lantern"},
     {"a reading nook", "the home office", "the bedside"},
     12,
     400,
     1500},
    {"furniture",
     "Furniture",
     {"Armchair", "Bookshelf", "Coffee Table", "Desk", "Sofa", "Bar Stool", "Nightstand",
      "Dining Chair"},
     {"small apartments", "the living room", "a cosy corner"},
     40,
     2000,
     15000},
    {"kitchen",
     "Kitchen",
     {"Chef Knife", "Frying Pan", "Dutch Oven", "Cutting Board", "Kettle", "Mixing Bowl",
      "Travel Mug", "Coffee Grinder"},
     {"everyday cooking", "weekend baking", "the morning coffee"},
     8,
     350,
     900},
    {"outdoor",
     "Outdoor & Camping",
     {"Tent", "Sleeping Bag", "Camping Stove", "Hiking Backpack", "Headlamp", "Camp Chair",
      "Water Filter", "Trekking Poles"},
     {"weekend trips", "alpine hikes", "family camping"},
     15,
     900,
     2500},
    {"electronics",
     "Electronics",
     {"Wireless Headphones", "Bluetooth Speaker", "USB-C Charger", "Power Bank", "Smart Watch",
      "Webcam", "Mechanical Keyboard", "Wireless Mouse"},
     {"remote work", "commuting", "gaming sessions"},
     10,
     600,
     300},
    {"apparel",
     "Apparel",
     {"Rain Jacket", "Wool Sweater", "Denim Jeans", "Linen Shirt", "Hoodie", "Chino Trousers",
      "Puffer Vest", "T-Shirt"},
     {"cool evenings", "the office", "travel days"},
     12,
     300,
     500},
    {"footwear",
     "Footwear",
     {"Running Shoes", "Leather Boots", "Sneakers", "Sandals", "Hiking Boots", "Slippers",
      "Loafers", "Trail Runners"},
     {"long runs", "city walks", "muddy trails"},
     20,
     350,
     900},
    {"bags",
     "Bags & Travel",
     {"Travel Backpack", "Duffel Bag", "Messenger Bag", "Tote Bag", "Carry-On Suitcase", "Wallet",
      "Laptop Sleeve", "Packing Cubes"},
     {"weekend getaways", "the daily commute", "business travel"},
     10,
     500,
     1200},
    {"garden",
     "Garden",
     {"Planter", "Watering Can", "Pruning Shears", "Garden Hose", "Raised Bed", "Bird Feeder",
      "Compost Bin", "Seed Tray"},
     {"balcony gardens", "vegetable patches", "indoor plants"},
     6,
     250,
     2000},
    {"toys",
     "Toys & Games",
     {"Board Game", "Puzzle", "Building Blocks", "Plush Bear", "Kite", "Card Game", "Wooden Train",
      "Art Set"},
     {"family evenings", "rainy afternoons", "birthday gifts"},
     5,
     120,
     700},
    {"beauty",
     "Beauty & Care",
     {"Face Cream", "Shampoo", "Beard Oil", "Lip Balm", "Hand Soap", "Body Lotion", "Hair Brush",
      "Sunscreen"},
     {"sensitive skin", "daily routines", "travel kits"},
     4,
     90,
     250},
    {"sports",
     "Sports & Fitness",
     {"Yoga Mat", "Dumbbell Set", "Jump Rope", "Foam Roller", "Resistance Bands", "Water Bottle",
      "Tennis Racket", "Cycling Helmet"},
     {"home workouts", "the gym", "morning training"},
     6,
     400,
     1500},
    {"office",
     "Office Supplies",
     {"Notebook", "Fountain Pen", "Desk Organizer", "Monitor Stand", "Whiteboard", "Paper Tray",
      "Planner", "Sticky Notes"},
     {"focused work", "the study", "team meetings"},
     3,
     200,
     400},
    {"pets",
     "Pet Supplies",
     {"Dog Bed", "Cat Tree", "Leash", "Food Bowl", "Chew Toy", "Pet Carrier", "Scratching Post",
      "Grooming Brush"},
     {"playful puppies", "indoor cats", "long walks"},
     5,
     250,
     1200},
    {"books",
     "Books",
     {"Cookbook", "Travel Guide", "Novel", "Field Guide", "Sketchbook", "Atlas",
      "Poetry Collection", "Workbook"},
     {"quiet evenings", "curious minds", "gift giving"},
     6,
     80,
     600},
    {"bath",
     "Bath & Linen",
     {"Bath Towel", "Shower Curtain", "Bath Mat", "Duvet Cover", "Pillowcase", "Bathrobe",
      "Fitted Sheet", "Throw Blanket"},
     {"guest rooms", "slow mornings", "the master bedroom"},
     8,
     300,
     1100},
    {"audio",
     "Audio",
     {"Turntable", "Soundbar", "Studio Monitors", "Earbuds", "Microphone", "Headphone Amp", "Radio",
      "Subwoofer"},
     {"vinyl nights", "podcasting", "the home theatre"},
     20,
     1500,
     2200},
    {"tools",
     "Tools & DIY",
     {"Cordless Drill", "Hammer", "Screwdriver Set", "Tape Measure", "Workbench", "Socket Wrench",
      "Utility Knife", "Level"},
     {"weekend projects", "home repairs", "the workshop"},
     6,
     500,
     1800},
    {"baby",
     "Baby",
     {"Stroller", "High Chair", "Baby Monitor", "Changing Mat", "Teething Ring", "Swaddle",
      "Crib Mobile", "Bottle Set"},
     {"new parents", "the nursery", "trips out"},
     6,
     700,
     2500},
    {"jewelry",
     "Jewelry & Watches",
     {"Necklace", "Bracelet", "Earrings", "Ring", "Wristwatch", "Cufflinks", "Pendant", "Anklet"},
     {"special occasions", "everyday wear", "anniversary gifts"},
     15,
     1200,
     80},
    {"art",
     "Art Supplies",
     {"Watercolor Set", "Easel", "Canvas Pack", "Brush Set", "Charcoal Pencils", "Acrylic Paints",
      "Palette", "Drawing Pad"},
     {"beginners", "plein air painting", "the studio"},
     4,
     250,
     900},
    {"coffee-tea",
     "Coffee & Tea",
     {"Espresso Beans", "Loose Leaf Tea", "French Press", "Pour-Over Dripper", "Milk Frother",
      "Teapot", "Cold Brew Maker", "Tea Infuser"},
     {"slow mornings", "afternoon breaks", "the office kitchen"},
     5,
     300,
     600},
    {"storage",
     "Storage",
     {"Storage Box", "Shoe Rack", "Coat Hook", "Laundry Basket", "Drawer Divider", "Wall Shelf",
      "Under-Bed Bin", "Spice Rack"},
     {"tidy closets", "small spaces", "the entryway"},
     5,
     220,
     1300},
    {"cycling",
     "Cycling",
     {"Bike Light", "Bike Lock", "Saddle Bag", "Bike Pump", "Cycling Gloves", "Bottle Cage",
      "Bike Bell", "Repair Kit"},
     {"city commutes", "long rides", "night cycling"},
     5,
     300,
     500},
};
#define NVOCAB ((int)(sizeof vocabs / sizeof vocabs[0]))

static const char *const brands[] = {
    "Northwind",    "Alder & Co", "Brightfield", "Cobalt",  "Driftwood", "Ember",  "Fjord",
    "Granite Peak", "Harbor",     "Ironbark",    "Juniper", "Kestrel",   "Lumen",  "Maple Lane",
    "Nimbus",       "Oakhurst",   "Pinecrest",   "Quill",   "Redwood",   "Solace", "Tidewater",
    "Umber",        "Verde",      "Willow",      "Yarrow",  "Zephyr"};
static const char *const adjectives[] = {
    "Compact",  "Classic", "Modern",   "Rustic",   "Ultralight", "Heavy-Duty", "Minimalist",
    "Vintage",  "Premium", "Everyday", "Foldable", "Waterproof", "Ergonomic",  "Cordless",
    "Handmade", "Deluxe",  "Slim",     "Portable", "Insulated",  "Adjustable"};
static const char *const materials[] = {"Bamboo", "Oak",       "Walnut", "Brass",    "Copper",
                                        "Steel",  "Leather",   "Canvas", "Linen",    "Ceramic",
                                        "Glass",  "Wool",      "Cotton", "Recycled", "Cast Iron",
                                        "Marble", "Aluminium", "Cork"};
static const char *const colors[] = {"black",      "white", "sand",         "olive",    "navy",
                                     "terracotta", "slate", "forest green", "charcoal", "natural"};
static const char *const features[] = {
    "Built to last, with a two-year warranty.",
    "Easy to clean and dishwasher safe where it counts.",
    "Packed in plastic-free, recyclable packaging.",
    "Designed in small batches by independent makers.",
    "Light enough to take anywhere.",
    "Assembles in minutes without tools.",
    "Tested for durability in real homes.",
    "A customer favourite for its quiet, solid feel.",
};

#define N(a) ((int)(sizeof a / sizeof a[0]))

static uint64_t splitmix(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static int pick(uint64_t *s, int n) { return (int)(splitmix(s) % (uint64_t)n); }

struct seed_cat {
    char slug[PRODUCT_SLUG_MAX + 1];
    char name[PRODUCT_CATNAME_MAX + 1];
    const struct vocab *v;
};

static void make_category(int j, struct seed_cat *c)
{
    const struct vocab *v = &vocabs[j % NVOCAB];
    c->v = v;
    if (j < NVOCAB) {
        snprintf(c->slug, sizeof c->slug, "%s", v->slug);
        snprintf(c->name, sizeof c->name, "%s", v->name);
    } else {
        snprintf(c->slug, sizeof c->slug, "%s-%d", v->slug, j / NVOCAB + 1);
        snprintf(c->name, sizeof c->name, "%s %d", v->name, j / NVOCAB + 1);
    }
}

struct gen {
    char sku[24], name[PRODUCT_NAME_MAX + 1], desc[600], attrs[200];
    int64_t price, stock, weight;
};

static void generate(uint32_t seed, int64_t k, const struct seed_cat *cat, struct gen *g)
{
    uint64_t s = ((uint64_t)seed << 32) ^ (uint64_t)k * 0x2545f4914f6cdd1dull;
    splitmix(&s);
    const struct vocab *v = cat->v;
    const char *brand = brands[pick(&s, N(brands))];
    const char *adj = adjectives[pick(&s, N(adjectives))];
    const char *mat = materials[pick(&s, N(materials))];
    const char *noun = v->nouns[pick(&s, 8)];
    const char *color = colors[pick(&s, N(colors))];
    const char *use = v->uses[pick(&s, 3)];
    const char *feat = features[pick(&s, N(features))];
    snprintf(g->sku, sizeof g->sku, "EMP-%08lld", (long long)k);
    /* Not every name carries a material: some products only mention it in the description */
    if (pick(&s, 3) == 0 || strstr(noun, mat))
        snprintf(g->name, sizeof g->name, "%s %s %s", brand, adj, noun);
    else
        snprintf(g->name, sizeof g->name, "%s %s %s %s", brand, adj, mat, noun);
    snprintf(g->desc, sizeof g->desc,
             "A %s %s in %s, made with %s details, ideal for %s. %s Part of the %s range from "
             "%s.",
             adj, noun, color, mat, use, feat, cat->name, brand);
    for (char *p = g->desc + 2; *p && p < g->desc + 2 + strlen(adj); p++)
        if (*p >= 'A' && *p <= 'Z')
            *p = (char)(*p - 'A' + 'a');
    /* log-uniform-ish price in the category's range, ending in .99 */
    double u = (double)(splitmix(&s) >> 11) / 9007199254740992.0;
    double lo = v->min_price, hi = v->max_price;
    double major = lo * __builtin_pow(hi / lo, u * u);
    g->price = (int64_t)major * 100 + 99;
    g->stock = pick(&s, 100) < 15 ? 0 : 1 + pick(&s, 250);
    g->weight = v->weight / 2 + pick(&s, v->weight + 1);
    snprintf(g->attrs, sizeof g->attrs, "{\"color\":\"%s\",\"material\":\"%s\"}", color, mat);
}

static void progress(int done, int total, int64_t started)
{
    int width = 40, filled = total ? (int)((int64_t)done * width / total) : width;
    char bar[41];
    for (int i = 0; i < width; i++)
        bar[i] = i < filled ? '#' : ' ';
    bar[width] = 0;
    double secs = (double)(mono_ms() - started) / 1000.0;
    printf("\r  [%s] %3d%% %d/%d products  %.1fs", bar,
           total ? (int)((int64_t)done * 100 / total) : 100, done, total, secs);
    fflush(stdout);
}

int product__seed(struct app *app, int n, int m, bool show, uint32_t seed)
{
    if (n < 0 || m < 1)
        return ERR_INVALID;
    struct db *db = product__db(app);
    struct seed_cat *cats = calloc((size_t)m, sizeof *cats);
    int64_t *ids = calloc((size_t)n + 1, sizeof *ids),
            *stock = calloc((size_t)n + 1, sizeof *stock);
    int batch = db_dialect(db) == DB_SQLITE ? 1 : SEED_BATCH;
    struct db_val *args = calloc(SEED_BATCH * SEED_COLS + 1, sizeof *args);
    struct gen *gens = calloc(SEED_BATCH, sizeof *gens);
    char(*imgs)[64] = calloc(SEED_BATCH, sizeof *imgs);
    int rc = 0;
    if (!cats || !ids || !stock || !args || !gens || !imgs)
        rc = ERR_NOMEM;
    struct db_conn *c = NULL;
    if (rc == 0)
        rc = db_conn_take(db, &c);
    int64_t started = mono_ms(), now = now_ms(), offset = 0;
    if (rc == 0)
        rc = product__store_count(c, &offset);
    if (rc >= 0)
        product__store_bulk_mode(db, c, true);
    if (rc >= 0)
        rc = db_begin(c);
    for (int j = 0; rc >= 0 && j < m; j++) {
        make_category(j, &cats[j]);
        rc = product__store_category(c, cats[j].slug, cats[j].name, now);
    }
    int done = 0, last_pct = -1;
    while (rc >= 0 && done < n) {
        int rows = n - done < batch ? n - done : batch;
        for (int r = 0; r < rows; r++) {
            int64_t k = offset + done + r;
            /* Categories get uneven sizes, like real shops: k mixes a skew into the pick. */
            uint64_t cs = (uint64_t)k * 0x9e3779b97f4a7c15ull ^ seed;
            int ci = (int)(splitmix(&cs) % (uint64_t)m);
            if (m > 3 && (k % 5) == 0)
                ci = ci % (m / 3 + 1);
            struct gen *g = &gens[r];
            generate(seed, k, &cats[ci], g);
            int64_t id = id_new(0);
            ids[done + r] = id;
            stock[done + r] = g->stock;
            snprintf(imgs[r], sizeof imgs[r], "/images/products/%s.jpg", g->sku);
            struct db_val *a = &args[r * SEED_COLS];
            a[0] = DB_INT(id);
            a[1] = DB_TEXT(g->sku);
            a[2] = DB_TEXT(g->name);
            a[3] = DB_TEXT(g->desc);
            a[4] = DB_TEXT(cats[ci].slug);
            a[5] = DB_INT(g->price);
            a[6] = DB_TEXT(imgs[r]);
            a[7] = DB_TEXT(g->attrs);
            a[8] = DB_INT(g->weight);
            a[9] = DB_INT(g->stock);
        }
        args[rows * SEED_COLS] = DB_INT(now);
        rc = product__store_seed_insert(c, rows, args);
        done += rows;
        int pct = (int)((int64_t)done * 100 / n);
        if (show && pct != last_pct) {
            progress(done, n, started);
            last_pct = pct;
        }
    }
    if (rc >= 0)
        rc = db_commit(c);
    bool committed = rc >= 0;
    if (c)
        product__store_bulk_mode(db, c, false);
    db_conn_give(c);
    if (show)
        printf("\n");
    /* stock_available is written above; the inventory gets the same figures without
     * announcing them back (nothing left for the catalog to do) */
    if (rc >= 0 && n > 0 && app_has_service(app, "inventory")) {
        for (int off = 0; rc >= 0 && off < n; off += 10000)
            rc = inventory_set_many_quiet(app, ids + off, stock + off,
                                          n - off < 10000 ? n - off : 10000);
    }
    /* the products are in even when handing their stock over failed: drop what the
     * caches and the search copy hold either way */
    if (committed)
        product__invalidate(product__ctx(app), 0, true);
    if (committed && n > 0) {
        int frc = product__store_index_flush(db);
        if (frc < 0) /* searches are right without it, only slower until a vacuum */
            log_warn("seed: merging the search index's pending entries failed: %s", err_str(frc));
    }
    free(cats);
    free(ids);
    free(stock);
    free(args);
    free(gens);
    free(imgs);
    return rc < 0 ? rc : 0;
}

int product__seed_command(struct app *app, int argc, char **argv)
{
    long n = -1, m = 0, seed = 42;
    for (int i = 1; i < argc; i++) {
        long *t = NULL;
        if (!strcmp(argv[i], "--products"))
            t = &n;
        else if (!strcmp(argv[i], "--categories"))
            t = &m;
        else if (!strcmp(argv[i], "--seed"))
            t = &seed;
        char *end = NULL;
        if (!t || i + 1 >= argc || (*t = strtol(argv[i + 1], &end, 10), *end)) {
            fprintf(stderr, "usage: emporium seed --products N [--categories M] [--seed S]\n");
            return 2;
        }
        i++;
    }
    if (n < 1 || n > 10000000) {
        fprintf(stderr, "emporium seed: --products must be 1 to 10000000\n");
        return 2;
    }
    if (m == 0)
        m = n < 1000 ? (n / 25 > 1 ? n / 25 : 1) : NVOCAB;
    if (m > 1000 || m < 1 || seed < 0 || seed > 0xffffffffL) {
        fprintf(stderr, "emporium seed: --categories must be 1 to 1000, --seed 0 to 2^32-1\n");
        return 2;
    }
    bool tty = isatty(STDOUT_FILENO);
    int64_t t0 = mono_ms();
    int rc = product__seed(app, (int)n, (int)m, tty, (uint32_t)seed);
    if (rc < 0) {
        fprintf(stderr, "emporium seed: %s\n", err_str(rc));
        return 1;
    }
    printf("seeded %ld products in %ld categories in %.2f s\n", n, m,
           (double)(mono_ms() - t0) / 1000.0);
    return 0;
}

int product__on_serve(struct app *app)
{
    if (!app_config(app)->demo)
        return 0;
    int rc = product__store_empty(product__db(app));
    if (rc <= 0)
        return rc;
    int64_t t0 = mono_ms();
    rc = product__seed(app, DEMO_PRODUCTS, DEMO_CATEGORIES, false, 42);
    if (rc < 0) {
        log_error("demo catalog: %s", err_str(rc));
        return rc;
    }
    log_info("demo catalog: %d products in %d categories (%lld ms); --no-demo turns this off",
             DEMO_PRODUCTS, DEMO_CATEGORIES, (long long)(mono_ms() - t0));
    return 0;
}

/* `emporium seed` flags, checked by main.c before the data dir is opened. */
static const struct cli_flag seed_flags[] = {
    {"--products", "N", "products to generate", 1, 10000000, true},
    {"--categories", "M", "categories (default: products/25, at most 1000)", 1, 1000, false},
    {"--seed", "S", "random seed (default 42)", 0, 0xffffffffL, false},
    {NULL, NULL, NULL, 0, 0, false},
};
const struct cli_command product__seed_cli = {"seed", "generate a demo catalog",
                                              "emporium seed --products 1000 --categories 40",
                                              seed_flags, NULL};
