//! The scale benchmark's result table: one row per measurement, one column per proxy, each
//! value after the first column followed by its ratio to the first column; notes below.

/// One measurement across the proxies.
pub struct Row {
    name: String,
    unit: &'static str,
    values: Vec<Option<f64>>,
}

/// Results collected during a run.
pub struct Report {
    columns: Vec<String>,
    rows: Vec<Row>,
    notes: Vec<Vec<String>>,
    limits: Vec<String>,
    global: Vec<String>,
}

impl Report {
    /// An empty report with the given column labels.
    pub fn new(columns: Vec<String>) -> Report {
        Report {
            notes: vec![Vec::new(); columns.len()],
            columns,
            rows: Vec::new(),
            limits: Vec::new(),
            global: Vec::new(),
        }
    }

    /// Records `value` for the row `name` in `column` (rows keep their first-seen order).
    pub fn set(&mut self, name: &str, unit: &'static str, column: usize, value: f64) {
        let width = self.columns.len();
        let index = match self.rows.iter().position(|r| r.name == name) {
            Some(index) => index,
            None => {
                self.rows.push(Row {
                    name: name.to_string(),
                    unit,
                    values: vec![None; width],
                });
                self.rows.len() - 1
            }
        };
        self.rows[index].values[column] = Some(value);
    }

    /// A note on one column (failures, negotiated parameters); repeated notes are kept once.
    pub fn note(&mut self, column: usize, text: String) {
        if !self.notes[column].contains(&text) {
            println!("  {}: {text}", self.columns[column]);
            self.notes[column].push(text);
        }
    }

    /// A configured limit that bounds a measurement (printed once).
    pub fn limit(&mut self, text: &str) {
        if !self.limits.iter().any(|l| l == text) {
            self.limits.push(text.to_string());
        }
    }

    /// A note on the whole run.
    pub fn global_note(&mut self, text: String) {
        self.global.push(text);
    }

    /// Prints the table (Markdown) and the notes.
    pub fn print(&self, settings: &str) {
        println!();
        println!("scale benchmark: {settings}");
        println!();
        let mut header = "| measurement | unit |".to_string();
        let mut rule = "|---|---|".to_string();
        for (i, column) in self.columns.iter().enumerate() {
            if i == 0 {
                header += &format!(" {column} |");
            } else {
                header += &format!(" {column} (ratio to {}) |", self.columns[0]);
            }
            rule += "---:|";
        }
        println!("{header}");
        println!("{rule}");
        for row in &self.rows {
            let mut line = format!("| {} | {} |", row.name, row.unit);
            let first = row.values.first().copied().flatten();
            for (i, value) in row.values.iter().enumerate() {
                let cell = match (value, first) {
                    (None, _) => "n/a".to_string(),
                    (Some(v), Some(f)) if i > 0 && f != 0.0 => {
                        format!("{} ({:.2}×)", number(*v), v / f)
                    }
                    (Some(v), _) => number(*v),
                };
                line += &format!(" {cell} |");
            }
            println!("{line}");
        }
        println!();
        for (column, notes) in self.columns.iter().zip(&self.notes) {
            if !notes.is_empty() {
                println!("- {column}: {}", notes.join("; "));
            }
        }
        for limit in &self.limits {
            println!("- limits bounding the stalled readers: {limit}");
        }
        for note in &self.global {
            println!("- {note}");
        }
    }
}

/// Three significant digits or so.
fn number(value: f64) -> String {
    let magnitude = value.abs();
    if magnitude >= 100.0 {
        format!("{value:.0}")
    } else if magnitude >= 10.0 {
        format!("{value:.1}")
    } else {
        format!("{value:.2}")
    }
}
