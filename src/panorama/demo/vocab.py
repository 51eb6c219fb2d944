"""Word lists for the demo data: UK names, places, products, support topics, survey comments.

Everything here is plain data; the generator draws from it with numpy so the output is
deterministic for a seed.
"""

from __future__ import annotations

# --- people -------------------------------------------------------------------------------

MALE_FIRST = ["James", "John", "Robert", "Michael", "David", "William", "Richard", "Thomas", "Christopher", "Daniel", "Matthew", "Andrew", "Paul", "Mark", "Steven", "Peter", "Anthony", "Jonathan", "Benjamin", "Samuel", "Joseph", "Oliver", "Harry", "Jack", "George", "Charlie", "Jacob", "Alexander", "Edward", "Henry", "Luke", "Ryan", "Adam", "Simon", "Stephen", "Gary", "Kevin", "Ian", "Neil", "Lee", "Craig", "Jason", "Martin", "Graham", "Nicholas", "Philip", "Liam", "Connor", "Callum", "Kieran", "Mohammed", "Ali", "Arjun", "Ravi", "Sanjay", "Wei", "Tomasz", "Piotr", "Patrick", "Sean", "Gareth", "Rhys", "Owen", "Dylan", "Ethan", "Noah", "Leo", "Alfie", "Archie", "Freddie", "Theo", "Joshua", "Nathan", "Aaron", "Scott", "Dean", "Carl", "Wayne", "Barry", "Keith", "Colin", "Trevor"]

FEMALE_FIRST = ["Elizabeth", "Margaret", "Susan", "Sarah", "Emma", "Jennifer", "Catherine", "Katherine", "Rebecca", "Rachel", "Laura", "Charlotte", "Emily", "Sophie", "Olivia", "Amelia", "Jessica", "Hannah", "Lucy", "Victoria", "Helen", "Claire", "Nicola", "Joanne", "Michelle", "Karen", "Julie", "Lisa", "Amanda", "Deborah", "Patricia", "Jacqueline", "Alison", "Louise", "Gemma", "Hayley", "Natalie", "Samantha", "Zoe", "Chloe", "Megan", "Ellie", "Grace", "Isabella", "Mia", "Ava", "Poppy", "Isla", "Freya", "Priya", "Aisha", "Fatima", "Anjali", "Mei", "Agnieszka", "Siobhan", "Niamh", "Ffion", "Abigail", "Alexandra", "Jane", "Anne", "Mary", "Christine", "Amy", "Kelly", "Stacey", "Leanne", "Kirsty", "Donna", "Tracey", "Dawn", "Sharon", "Wendy", "Eleanor"]

NICKNAMES: dict[str, tuple[str, ...]] = {
    "Robert": ("Bob", "Rob", "Robbie"),
    "William": ("Will", "Bill", "Billy"),
    "Elizabeth": ("Liz", "Beth", "Lizzie", "Betty"),
    "Margaret": ("Maggie", "Peggy", "Meg"),
    "Michael": ("Mike", "Mick"),
    "Richard": ("Rich", "Rick", "Richie"),
    "Thomas": ("Tom", "Tommy"),
    "Christopher": ("Chris",),
    "Daniel": ("Dan", "Danny"),
    "Matthew": ("Matt",),
    "Andrew": ("Andy", "Drew"),
    "Anthony": ("Tony", "Ant"),
    "Jonathan": ("Jon", "Jonny"),
    "Benjamin": ("Ben",),
    "Samuel": ("Sam", "Sammy"),
    "Joseph": ("Joe", "Joey"),
    "Alexander": ("Alex", "Sandy"),
    "Edward": ("Ed", "Eddie", "Ted"),
    "Henry": ("Harry", "Hal"),
    "James": ("Jim", "Jimmy", "Jamie"),
    "David": ("Dave", "Davey"),
    "Stephen": ("Steve",),
    "Steven": ("Steve",),
    "Nicholas": ("Nick", "Nicky"),
    "Philip": ("Phil",),
    "Peter": ("Pete",),
    "Joshua": ("Josh",),
    "Nathan": ("Nate",),
    "Oliver": ("Olly", "Ollie"),
    "Frederick": ("Fred", "Freddie"),
    "Jennifer": ("Jen", "Jenny"),
    "Catherine": ("Cathy", "Kate", "Cat"),
    "Katherine": ("Kate", "Katie", "Kathy"),
    "Rebecca": ("Becky", "Becca"),
    "Victoria": ("Vicky", "Tori"),
    "Jessica": ("Jess",),
    "Samantha": ("Sam", "Sammy"),
    "Alexandra": ("Alex", "Lexi"),
    "Patricia": ("Pat", "Trish"),
    "Deborah": ("Debbie", "Deb"),
    "Susan": ("Sue", "Susie"),
    "Jacqueline": ("Jackie",),
    "Abigail": ("Abbie", "Abby"),
    "Charlotte": ("Charlie", "Lottie"),
    "Nicola": ("Nicky", "Nikki"),
    "Isabella": ("Bella", "Izzy"),
    "Amanda": ("Mandy",),
    "Christine": ("Chris", "Chrissie"),
    "Emily": ("Em", "Emmy"),
    "Olivia": ("Liv", "Livvy"),
    "Eleanor": ("Ellie", "Nell"),
    "Helen": ("Nell",),
    "Natalie": ("Nat",),
    "Michelle": ("Shell",),
}

SURNAMES = ["Smith", "Jones", "Williams", "Taylor", "Brown", "Davies", "Evans", "Wilson", "Thomas", "Johnson", "Roberts", "Robinson", "Thompson", "Wright", "Walker", "White", "Edwards", "Hughes", "Green", "Hall", "Lewis", "Harris", "Clarke", "Patel", "Jackson", "Wood", "Turner", "Martin", "Cooper", "Hill", "Ward", "Morris", "Moore", "Clark", "Lee", "King", "Baker", "Harrison", "Morgan", "Allen", "James", "Scott", "Phillips", "Watson", "Davis", "Parker", "Price", "Bennett", "Young", "Griffiths", "Mitchell", "Kelly", "Cook", "Carter", "Richardson", "Bailey", "Collins", "Bell", "Shaw", "Murphy", "Miller", "Cox", "Richards", "Khan", "Marshall", "Anderson", "Simpson", "Ellis", "Adams", "Singh", "Begum", "Wilkinson", "Foster", "Chapman", "Powell", "Webb", "Rogers", "Gray", "Mason", "Ali", "Hunt", "Hussain", "Campbell", "Matthews", "Owen", "Palmer", "Holmes", "Mills", "Barnes", "Knight", "Lloyd", "Butler", "Russell", "Barker", "Fisher", "Stevens", "Jenkins", "Murray", "Dixon", "Harvey", "Graham", "Pearson", "Ahmed", "Fletcher", "Walsh", "Kaur", "Gibson", "Howard", "Andrews", "Stewart", "Elliott", "Reynolds", "Saunders", "Payne", "Fox", "Ford", "Pearce", "Day", "Brooks", "West", "Lawrence", "Cole", "Atkinson", "Bradley", "Spencer", "Gill", "Dawson", "Ball", "Burton", "O'Brien", "Watts", "Rose", "Booth", "Perry", "Ryan", "Grant", "Wells", "Armstrong", "Francis", "Rees", "Hayes", "Hart", "Hudson", "Newman", "Barrett", "Webster", "Hunter", "Gregory", "Carr", "Lowe", "Page", "Marsh", "Riley", "Dunn", "Woods", "Parsons", "Berry", "Stone", "Reid", "Holland", "Hawkins", "Harding", "Porter", "Robertson", "Newton", "Oliver", "Reed", "Kennedy", "Williamson", "Bird", "Gardner", "Shah", "Dean", "Lane", "Cooke", "Bates", "Henderson", "Parry", "Burgess", "Bishop", "Walton", "Burns", "Nicholson", "Shepherd", "Ross", "Cross", "Long", "Freeman", "Warren", "Nicholls", "Hamilton", "Byrne", "Sutton", "McDonald", "Yates", "Hodgson", "Robson", "Curtis", "Hopkins", "O'Connor", "Harper", "Coleman", "Watkins", "Moss", "McCarthy", "Chambers", "O'Neill", "Griffin", "Sharp", "Hardy", "Wheeler", "Potter", "Osborne", "Johnston", "Gordon", "Doyle", "Wallace", "George", "Jordan", "Hutchinson", "Reeves", "Lamb", "Nowak", "Kowalski", "Chen", "Wang", "Nguyen", "Okafor", "Adeyemi", "Mensah", "Smith-Jones", "MacLeod", "Fitzgerald", "Lloyd-Davies", "Van-Dyke"]

TITLES_MALE = ("Mr", "Mr", "Mr", "Mr", "Dr")
TITLES_FEMALE = ("Ms", "Mrs", "Miss", "Mrs", "Ms", "Dr")

# --- places -------------------------------------------------------------------------------

# city, postcode areas, dialling code, subscriber number length, leading digits, weight
CITIES: tuple[tuple[str, tuple[str, ...], str, int, str, float], ...] = (
    ("London", ("E", "N", "NW", "SE", "SW", "W"), "20", 8, "378", 0.24),
    ("Manchester", ("M",), "161", 7, "2345789", 0.06),
    ("Birmingham", ("B",), "121", 7, "2345789", 0.06),
    ("Leeds", ("LS",), "113", 7, "23", 0.04),
    ("Glasgow", ("G",), "141", 7, "2345", 0.04),
    ("Edinburgh", ("EH",), "131", 7, "2345", 0.035),
    ("Bristol", ("BS",), "117", 7, "9", 0.035),
    ("Liverpool", ("L",), "151", 7, "2345", 0.035),
    ("Sheffield", ("S",), "114", 7, "2", 0.03),
    ("Newcastle upon Tyne", ("NE",), "191", 7, "2", 0.03),
    ("Nottingham", ("NG",), "115", 7, "9", 0.03),
    ("Leicester", ("LE",), "116", 7, "2", 0.025),
    ("Cardiff", ("CF",), "29", 8, "2", 0.025),
    ("Belfast", ("BT",), "28", 8, "9", 0.02),
    ("Brighton", ("BN",), "1273", 6, "2345678", 0.02),
    ("Southampton", ("SO",), "23", 8, "8", 0.02),
    ("Oxford", ("OX",), "1865", 6, "2345678", 0.015),
    ("Cambridge", ("CB",), "1223", 6, "2345678", 0.015),
    ("York", ("YO",), "1904", 6, "2345678", 0.015),
    ("Norwich", ("NR",), "1603", 6, "2345678", 0.015),
    ("Exeter", ("EX",), "1392", 6, "2345678", 0.015),
    ("Reading", ("RG",), "118", 7, "9", 0.02),
    ("Coventry", ("CV",), "24", 8, "7", 0.02),
    ("Aberdeen", ("AB",), "1224", 6, "2345678", 0.015),
    ("Bath", ("BA",), "1225", 6, "2345678", 0.01),
    ("Milton Keynes", ("MK",), "1908", 6, "2345678", 0.015),
    ("Swansea", ("SA",), "1792", 6, "2345678", 0.01),
    ("Plymouth", ("PL",), "1752", 6, "2345678", 0.01),
)

STREET_NAMES = ["High", "Church", "Station", "Park", "Victoria", "Green", "Manor", "Kings", "Queens", "Mill", "New", "Grange", "Albert", "Windsor", "York", "London", "Springfield", "Elm", "Oak", "Beech", "Willow", "Chestnut", "Cedar", "Highfield", "Orchard", "Meadow", "Brook", "Alexandra", "Richmond", "Market", "Castle", "Bridge", "School", "Chapel", "Hawthorn", "Rowan", "Ash", "Holly", "Ivy", "Stanley", "Cromwell", "Nelson", "Wellington", "Bramble", "Heather", "Lime", "Poplar", "Cherry"]
STREET_TYPES = (
    ("Road", "Rd"), ("Street", "St"), ("Lane", "Ln"), ("Avenue", "Ave"), ("Close", "Cl"),
    ("Drive", "Dr"), ("Way", "Way"), ("Gardens", "Gdns"), ("Crescent", "Cres"),
    ("Court", "Ct"), ("Place", "Pl"), ("Grove", "Gr"), ("Terrace", "Ter"),
)
POSTCODE_LETTERS = "ABDEFGHJLNPQRSTUWXYZ"  # the inward code never uses C I K M O V

# --- email --------------------------------------------------------------------------------

EMAIL_DOMAINS = (
    ("gmail.com", 0.30), ("hotmail.co.uk", 0.11), ("hotmail.com", 0.05), ("outlook.com", 0.08),
    ("yahoo.co.uk", 0.07), ("yahoo.com", 0.03), ("icloud.com", 0.08), ("btinternet.com", 0.06),
    ("live.co.uk", 0.04), ("sky.com", 0.04), ("aol.com", 0.02), ("googlemail.com", 0.03),
    ("virginmedia.com", 0.03), ("me.com", 0.02), ("protonmail.com", 0.01), ("talktalk.net", 0.03),
)
DOMAIN_TYPOS = {
    "gmail.com": ("gmial.com", "gmail.co", "gamil.com", "gmai.com", "gmail.con"),
    "hotmail.co.uk": ("hotmial.co.uk", "hotmail.co", "hotmail.co.k", "hotmal.co.uk"),
    "hotmail.com": ("hotmial.com", "hotmail.con", "hotmil.com"),
    "outlook.com": ("outlok.com", "outlook.co", "outloo.com"),
    "yahoo.co.uk": ("yaho.co.uk", "yahoo.co", "yahooo.co.uk"),
    "yahoo.com": ("yaho.com", "yahoo.con"),
    "icloud.com": ("icloud.co", "icoud.com", "iclod.com"),
    "btinternet.com": ("btinternet.co.uk", "btinternt.com", "btinterent.com"),
}
JUNK_EMAILS = ("test@test.com", "noemail@noemail.com", "none@none.com", "a@a.com", "no@email.com")
JUNK_PHONES = ("0000000000", "00000000000", "07000000000", "01234567890", "1234567890")

# --- shop ---------------------------------------------------------------------------------

# category, code, price range (GBP), product adjectives, product nouns, share of demand,
# usual quantity per line (mean of extra units)
CATEGORIES: tuple[tuple[str, str, float, float, tuple[str, ...], tuple[str, ...], float, float], ...] = (
    ("Womenswear", "WW", 12, 140,
     ("Linen", "Cotton", "Wool-Blend", "Floral", "Striped", "Wrap", "Relaxed", "Tailored", "Cropped"),
     ("Dress", "Blouse", "Jumper", "Cardigan", "Jeans", "Midi Skirt", "Coat", "Trousers", "Shirt"),
     0.16, 0.1),
    ("Menswear", "MW", 12, 130,
     ("Oxford", "Slim-Fit", "Merino", "Chino", "Denim", "Quilted", "Linen", "Checked"),
     ("Shirt", "Jumper", "Jeans", "Jacket", "Polo Shirt", "Trousers", "Hoodie", "Overcoat"),
     0.12, 0.1),
    ("Footwear", "FW", 20, 160,
     ("Leather", "Suede", "Canvas", "Running", "Chelsea", "Waterproof", "Slip-On"),
     ("Trainers", "Boots", "Loafers", "Sandals", "Ankle Boots", "Pumps", "Slippers"),
     0.09, 0.0),
    ("Beauty", "BE", 4, 65,
     ("Hydrating", "Vitamin C", "Rose", "Matte", "Overnight", "Gentle", "Argan"),
     ("Face Cream", "Serum", "Lipstick", "Shampoo", "Body Lotion", "Cleanser", "Eau de Parfum"),
     0.10, 0.5),
    ("Home & Kitchen", "HK", 6, 220,
     ("Stoneware", "Cast-Iron", "Linen", "Bamboo", "Copper", "Glass", "Ceramic", "Velvet"),
     ("Dinner Set", "Casserole Dish", "Duvet Cover", "Cushion", "Table Lamp", "Kettle", "Towel Bale", "Vase"),
     0.13, 0.3),
    ("Electronics", "EL", 15, 650,
     ("Wireless", "Smart", "Portable", "Noise-Cancelling", "4K", "Bluetooth", "Compact"),
     ("Headphones", "Speaker", "Smartwatch", "Tablet", "TV", "Air Fryer", "Robot Vacuum", "Camera"),
     0.08, 0.0),
    ("Sports & Outdoors", "SO", 8, 260,
     ("Trail", "Lightweight", "Insulated", "Yoga", "Adjustable", "Thermal", "Cycling"),
     ("Jacket", "Backpack", "Mat", "Dumbbells", "Water Bottle", "Tent", "Leggings", "Helmet"),
     0.08, 0.2),
    ("Toys & Games", "TG", 4, 85,
     ("Wooden", "Classic", "Creative", "Junior", "Family", "Deluxe", "Mini"),
     ("Building Set", "Board Game", "Puzzle", "Craft Kit", "Plush Bear", "Train Set", "Doll's House"),
     0.07, 0.3),
    ("Books & Stationery", "BS", 3, 35,
     ("Hardback", "Illustrated", "Bestselling", "A5", "Recycled", "Leather-Bound"),
     ("Novel", "Cookbook", "Notebook", "Planner", "Pen Set", "Travel Guide", "Colouring Book"),
     0.06, 0.6),
    ("Garden", "GA", 5, 190,
     ("Solar", "Galvanised", "Terracotta", "Folding", "Weatherproof", "Perennial"),
     ("Lights", "Planter", "Watering Can", "Bistro Set", "Hose", "Bird Feeder", "Seed Collection"),
     0.05, 0.4),
    ("Food & Drink", "FD", 3, 45,
     ("Artisan", "Organic", "Single-Origin", "Luxury", "Hand-Made", "Vintage"),
     ("Coffee Beans", "Chocolate Selection", "Tea Caddy", "Red Wine", "Olive Oil", "Hamper", "Gin"),
     0.06, 1.0),
)
PRODUCTS_PER_CATEGORY = 30

CHANNELS = ("web", "app", "store")
STORES = ("London Oxford Street", "Manchester Arndale", "Birmingham Bullring", "Leeds Trinity",
          "Glasgow Buchanan", "Bristol Cabot Circus", "Cardiff St David's", "Edinburgh Princes St")
PUBLIC_COUPONS = ("WELCOME10", "FREESHIP", "STUDENT15", "SPRING10", "THANKYOU5")

# --- B2B ----------------------------------------------------------------------------------

COMPANY_WORDS = ["Harbour", "Oakfield", "Riverside", "Northgate", "Bluebell", "Kestrel", "Ashford", "Lindon", "Meridian", "Foxglove", "Granite", "Pennine", "Thistle", "Wessex", "Cobalt", "Sterling", "Larch", "Beacon", "Hollin", "Marlow", "Orchard", "Quay", "Saxon", "Tamar", "Vale", "Wharf", "Copper", "Elmstead", "Fenwick", "Greystone", "Juniper", "Kingfisher", "Lakeside"]
COMPANY_KINDS = (
    "Interiors", "Hospitality", "Design Studio", "Consulting", "Events", "Dental Practice",
    "Architects", "Estates", "Catering", "Florists", "Salon", "Property Management", "Cafe",
    "Fitness", "Marketing", "Veterinary Clinic", "Solicitors", "Accountants", "Nursery",
)
COMPANY_SUFFIXES = ("Ltd", "Ltd", "Limited", "LLP", "& Co", "Group", "")
JOB_TITLES = (
    "Office Manager", "Director", "Managing Director", "Procurement Lead", "Operations Manager",
    "Owner", "Practice Manager", "Buyer", "Head of Facilities", "Finance Manager", "PA",
    "Events Coordinator", "Founder", "Purchasing Assistant",
)
SHARED_MAILBOXES = ("info", "office", "hello", "accounts", "admin")

# --- support ------------------------------------------------------------------------------

# topic, after an order?, base priority weights (low, normal, high, urgent), subject lines
TICKET_TOPICS: tuple[tuple[str, bool, tuple[float, float, float, float], tuple[str, ...]], ...] = (
    ("Delivery delay", True, (0.1, 0.5, 0.3, 0.1),
     ("Where is my order?", "Order not arrived yet", "Delivery is late", "Tracking not updating")),
    ("Damaged item", True, (0.05, 0.45, 0.4, 0.1),
     ("Item arrived damaged", "Broken on arrival", "Parcel was crushed")),
    ("Wrong item", True, (0.1, 0.5, 0.35, 0.05),
     ("Received the wrong item", "Wrong size sent", "Not what I ordered")),
    ("Refund request", True, (0.1, 0.5, 0.3, 0.1),
     ("Refund not received", "Where is my refund?", "Requesting a refund")),
    ("Returns", True, (0.3, 0.55, 0.1, 0.05),
     ("How do I return this?", "Returns label request", "Return collection")),
    ("Account / login", False, (0.3, 0.5, 0.15, 0.05),
     ("Can't log in", "Password reset not working", "Update my details", "Close my account")),
    ("Payment issue", False, (0.05, 0.35, 0.4, 0.2),
     ("Charged twice", "Payment declined", "Card charged but no order")),
    ("Product question", False, (0.5, 0.45, 0.05, 0.0),
     ("Question about sizing", "Is this back in stock?", "Product dimensions")),
    ("Loyalty points", False, (0.4, 0.5, 0.1, 0.0),
     ("Points missing", "Can't redeem my points", "Loyalty tier question")),
)
PRIORITIES = ("low", "normal", "high", "urgent")
TICKET_CHANNELS = ("email", "phone", "chat")

# --- NPS comments -------------------------------------------------------------------------

NPS_TOPICS = ("delivery", "price", "quality", "service", "app", "range", "returns")
NPS_PHRASES: dict[tuple[str, str], tuple[str, ...]] = {
    ("delivery", "positive"): ("Delivery was really quick", "Arrived the next day, brilliant",
                               "Parcel came earlier than promised"),
    ("delivery", "neutral"): ("Delivery was fine", "Delivery took a few days but got there"),
    ("delivery", "negative"): ("Parcel arrived two days late", "Delivery was a nightmare",
                               "Courier left it in the rain", "Still waiting on part of my order"),
    ("price", "positive"): ("Great value for money", "Prices are very fair", "Loved the discount"),
    ("price", "neutral"): ("Prices are okay", "A bit pricey but decent"),
    ("price", "negative"): ("Far too expensive now", "Prices keep going up",
                            "Cheaper elsewhere to be honest"),
    ("quality", "positive"): ("Quality is excellent", "Lovely well made products",
                              "Everything I bought has lasted"),
    ("quality", "neutral"): ("Quality is as expected", "Products are alright"),
    ("quality", "negative"): ("Quality has really dropped", "Fell apart after one wash",
                              "Cheap materials"),
    ("service", "positive"): ("Customer service were so helpful", "Staff were friendly and kind",
                              "Sorted my problem straight away"),
    ("service", "neutral"): ("Service was okay", "Took a while to get an answer"),
    ("service", "negative"): ("Nobody answered my emails", "Customer service was rude",
                              "Spent an hour on hold"),
    ("app", "positive"): ("The app is easy to use", "Checkout on the app is quick"),
    ("app", "neutral"): ("Website works mostly", "App is fine"),
    ("app", "negative"): ("The app keeps crashing", "Website is slow and confusing",
                          "Checkout failed three times"),
    ("range", "positive"): ("Great range of products", "Always find something I like"),
    ("range", "neutral"): ("Range is decent", "Could have more choice"),
    ("range", "negative"): ("Never have my size in stock", "Range is boring now"),
    ("returns", "positive"): ("Returns were painless", "Refund came back quickly"),
    ("returns", "neutral"): ("Returns process is okay",),
    ("returns", "negative"): ("Returning items is a hassle", "Still waiting for my refund"),
}
NPS_CLOSERS = {
    "positive": ("Will definitely order again.", "Highly recommend!", "Thank you!", ""),
    "neutral": ("", "Could be better.", "Overall fine."),
    "negative": ("Won't be ordering again.", "Very disappointed.", "Sort it out.", ""),
}

USER_AGENTS = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/124.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_4) AppleWebKit/605.1.15 Version/17.4 Safari/605.1.15",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 Chrome/124.0 Mobile Safari/537.36",
    "Mozilla/5.0 (iPad; CPU OS 17_4 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148 Safari/604.1",
)
UTM_SOURCES = (("google", "cpc"), ("facebook", "paid_social"), ("instagram", "paid_social"),
               ("newsletter", "email"), ("bing", "cpc"), ("tiktok", "paid_social"))
